"""Do you need labels to pre-train, and does the data need to be diverse? The study
(`study`: objectives x diversity x seeds, transferred to few-shot and labelled targets,
each objective's settings picked on the source by `tuning`), its tables (`tables`, with the
second floor of `floors`) and its answers in sentences (`answers`, El-Nouby et al.'s claim
in `el_nouby`)."""
