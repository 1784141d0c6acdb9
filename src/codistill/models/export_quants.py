"""The weight formats ``codistill student export --quant`` offers, apart from the exporter so
that building the command line (every start of ``codistill``) does not import gguf and numpy."""

QUANTS = ("f16", "bf16", "q8_0", "q4_k_m", "f32")
