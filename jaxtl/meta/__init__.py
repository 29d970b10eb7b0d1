"""Meta-learning: episodic tasks, the MAML family, ProtoNets, meta-training and evaluation."""
