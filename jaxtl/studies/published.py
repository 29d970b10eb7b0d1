"""The papers' numbers the tables compare with: Omniglot accuracies (%) of MAML and its
family (Finn et al. 2017, Table 1), ProtoNets, ANIL, Reptile, the peers' own reported
numbers and the black-box family's; a paper's number is shown beside runs of its length."""

PUBLISHED_MAML = {  # Finn et al. 2017, Table 1 (conv) and the MLP row; ProtoNets (Snell 2017)
    ("maml", "conv4", 5, 1): "98.7 +- 0.4", ("maml", "conv4", 5, 5): "99.9 +- 0.1",
    ("maml", "conv4", 20, 1): "95.8 +- 0.3", ("maml", "conv4", 20, 5): "98.9 +- 0.2",
    ("maml", "mlp", 5, 1): "89.7 +- 1.1", ("maml", "mlp", 5, 5): "97.5 +- 0.6",
    ("protonet", "conv4", 5, 1): "98.8", ("protonet", "conv4", 5, 5): "99.7",
    ("protonet", "conv4", 20, 1): "96.0", ("protonet", "conv4", 20, 5): "98.9",
    ("anil", "conv4", 20, 1): "96.2", ("anil", "conv4", 20, 5): "98.0",
    # First-order MAML (Finn 2017 Table 1; with transduction, per the Reptile paper).
    ("fomaml", "conv4", 5, 1): "98.3 +- 0.5", ("fomaml", "conv4", 5, 5): "99.2 +- 0.2",
    ("fomaml", "conv4", 20, 1): "89.4 +- 0.5", ("fomaml", "conv4", 20, 5): "97.9 +- 0.1",
    ("reptile", "conv4", 5, 1): "97.68", ("reptile", "conv4", 5, 5): "99.48",
    ("reptile", "conv4", 20, 1): "89.43", ("reptile", "conv4", 20, 5): "97.12",
}


PAPERS = {"maml": "Finn et al. 2017", "fomaml": "Finn et al. 2017", "anil": "Raghu et al. 2020",
          "protonet": "Snell et al. 2017", "reptile": "Nichol et al. 2018"}


PEERS = {  # peers' own reported Omniglot numbers, a row each below jaxtl's
    ("maml", "conv4"): {"learn2learn (reported)": {(5, 1): "99.1"}},
    # The black-box family's published results (other architectures than jaxtl's).
    ("blackbox", "conv4"): {
        "SNAIL, published (Mishra et al. 2018)": {(5, 1): "99.07", (5, 5): "99.78",
                                                  (20, 1): "97.64", (20, 5): "99.36"},
        "MANN, published (per Finn et al. 2017)": {(5, 1): "82.8", (5, 5): "94.9"}},
}


PAPER_ITERATIONS = 60_000  # MAML's Omniglot runs (Finn et al. 2017)

# Omniglot's one-shot challenge on Lake et al.'s protocol (within-alphabet 20-way 1-shot,
# evaluation alphabets, training on the 30 background ones): error rates, %.
PUBLISHED_LAKE = (
    ("people (Lake et al. 2015)", "4.5"),
    ("Bayesian program learning (Lake et al. 2015)", "3.3"),
    ("siamese network (Koch et al. 2015)", "8.0"),
    ("prototypical networks (per Lake et al. 2019)", "13.7"),
)
