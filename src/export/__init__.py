"""Models out of the lab and in: Hugging Face export (`python -m src.export`) and the
import of reference-format checkpoints (`python -m src.export.import_model`)."""
