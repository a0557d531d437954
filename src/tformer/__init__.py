"""tformer: the Transformer family on PyTorch, from the attention equation up."""

from tformer.config import PRESETS, ModelConfig
from tformer.generation import generate
from tformer.interop.huggingface import from_pretrained, save_pretrained
from tformer.models import (
    BERT,
    GPT,
    EncoderDecoder,
    MultipleChoice,
    QuestionAnswering,
    SequenceClassification,
    TokenClassification,
    TransformerModel,
    build_model,
    with_task_head,
)
from tformer.tokenization import Tokenizer

__version__ = "0.1.0"

__all__ = [
    "BERT", "GPT", "PRESETS", "EncoderDecoder", "ModelConfig", "MultipleChoice", "QuestionAnswering",
    "SequenceClassification", "TokenClassification", "TransformerModel", "build_model", "Tokenizer",
    "from_pretrained", "generate", "save_pretrained", "with_task_head",
]
