"""Meta-learning: episodic tasks (`tasks`), the MAML family and ProtoNets (`algorithms`),
the meta-trainer and evaluation (`train`), transfer baselines scored on tasks
(`baselines`, `fewshot`) and the multi-task learner on tasks (`multitask`).

Layer 5: imports layers 0-4, never `jaxtl.finetune`, `jaxtl.adapt`, `jaxtl.report` or
`jaxtl.studies`.
"""
