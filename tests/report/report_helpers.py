"""Hand-made metrics for report tests."""


def metrics(open_acc, closed, global_acc, n=(10, 20, 30), closed_type=None):
    """A metrics.json: accuracies as fractions; closed_type = the answer_type rule's closed accuracy."""
    o, c, g = n
    return {
        "split": "test",
        "n": g,
        "global": {"acc": global_acc, "n": g},
        "rules": {
            "yesno": {"open": {"acc": open_acc, "n": o}, "closed": {"acc": closed, "n": c}},
            "answer_type": {
                "open": {"acc": open_acc, "n": o},
                "closed": {"acc": closed_type or closed, "n": c},
            },
        },
        "open_soft": {"recall": 0.5, "f1": 0.25},
    }
