"""Entry points of the ``hf-dialret`` command (one module per command). Library code never imports these."""
