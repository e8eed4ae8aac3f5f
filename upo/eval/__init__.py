"""`upo eval`: generate on held-out prompts with trained models and their reference, score the replies, report."""
