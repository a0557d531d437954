"""Evaluation of pre-trained models without fine-tuning (zero-shot task scoring: `tformer.evaluation.zero_shot`)."""
