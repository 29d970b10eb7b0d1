"""The studies behind the documents' tables, each in one place with its protocol, table and
plot: surgical fine-tuning and LP-FT with the digits demo (`surgical/`), the pre-training
questions (`pretraining/`), fine-tuning against meta-learning by shots (`shots`), the
sinusoid lecture (`lecture`); the documents' generated blocks and the results report
(`documents`), with the papers' numbers (`published`) and the meta-learning and benchmark
tables (`meta_tables`, `lake_tables`, `benchmark_tables`).

Layer 7: imports the library; nothing in the library imports a study.
"""
