"""Fine-tuning: strategies as parameter-partition masks (`strategies`, `auto`), one
optimiser factory (`optim`), the trainer (`trainer`; its frozen-prefix cache in
`prefix`), the vmapped learning-rate grid (`grid`), the converged linear probe and LP-FT
(`probe`, `lpft`), validation picks (`tuning`), multi-task training (`multitask`) and
strategies compared on one task (`compare`).

Layer 5: imports layers 0-4 (`jaxtl.objectives` included), never `jaxtl.meta`,
`jaxtl.adapt`, `jaxtl.report` or `jaxtl.studies`.
"""
