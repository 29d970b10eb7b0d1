"""Do you need labels to pre-train, and does the data need to be diverse? The study
(`study`: objectives x diversity x seeds, transferred to few-shot and labelled targets) and
its answers in sentences (`answers`)."""
