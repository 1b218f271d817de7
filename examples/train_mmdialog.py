"""Train a retriever on MMDialog (paper setup: BERT-base + ResNet-50, in-batch negatives).

    python examples/train_mmdialog.py --data-dir data/mmdialog --architecture mdr --output-dir runs/mmdialog-mdr

Evaluation follows MMDialog's protocol: each test turn against its own 1 + 999 candidates per modality.
"""

from _paper_setup import parser, train

if __name__ == "__main__":
    train(parser(__doc__.splitlines()[0], needs_data=True).parse_args(), "mmdialog")
