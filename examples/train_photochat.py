"""Train a retriever on PhotoChat (paper setup: BERT-base + ResNet-50, in-batch negatives).

    python examples/train_photochat.py --data-dir data/photochat --image-dir data/photochat/images \\
        --architecture dr --output-dir runs/photochat-dr

Evaluation ranks every test query against all test photos (and all test text responses).
"""

from _paper_setup import parser, train

if __name__ == "__main__":
    train(parser(__doc__.splitlines()[0], needs_data=True).parse_args(), "photochat")
