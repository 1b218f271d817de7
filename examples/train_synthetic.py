"""Train a retriever on the embedded synthetic corpus with the paper's setup (BERT-base + ResNet-50 backbones).

    python examples/train_synthetic.py --output-dir runs/synthetic-bert-resnet
    python examples/train_synthetic.py --text-backbone tiny --vision-backbone tiny --learning-rate 1e-3 \\
        --batch-size 256 --epochs 5 --output-dir runs/synthetic-tiny   # offline, from scratch

BERT-base / ResNet-50 must be reachable (Hub cache or network) or given as local directories.
"""

from _paper_setup import parser, train

if __name__ == "__main__":
    train(parser(__doc__.splitlines()[0], needs_data=False).parse_args(), "synthetic")
