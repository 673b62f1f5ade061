"""Training: the VAE trainer (`vae.py`), the shared pieces (`common.py`) and the VAE losses (`losses.py`)."""
