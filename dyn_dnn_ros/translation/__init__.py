"""English->German translation: corpus, tokenizer and the weight-sharing Transformer."""
