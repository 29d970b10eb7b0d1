"""Surgical fine-tuning (Lee et al. 2023) and LP-FT (Kumar et al. 2022): the study
(`study`, its tasks in `tasks`), its tables, verdicts and plot (`report`), and the 8x8
digits demo sweep with its multi-task baseline (`digits`)."""
