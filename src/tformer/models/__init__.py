"""The model families, each built from the shared blocks: GPT, BERT, EncoderDecoder."""

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.bert import BERT
from tformer.models.gpt import GPT
from tformer.models.outputs import BertOutput, CausalLMOutput, EncoderOutput, Seq2SeqOutput
from tformer.models.seq2seq import EncoderDecoder

FAMILY_CLASSES: dict[str, type[TransformerModel]] = {"gpt": GPT, "bert": BERT, "encoder-decoder": EncoderDecoder}


def build_model(config: ModelConfig) -> TransformerModel:
    """The model of the config's family (GPT, BERT or EncoderDecoder), freshly initialised."""
    return FAMILY_CLASSES[config.family](config)


__all__ = [
    "BERT", "GPT", "BertOutput", "CausalLMOutput", "EncoderDecoder", "EncoderOutput", "FAMILY_CLASSES",
    "Seq2SeqOutput", "TransformerModel", "build_model",
]
