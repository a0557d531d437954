"""The model families, each built from the shared blocks: GPT, BERT, EncoderDecoder, the 2014 RNNSearch; and the
task heads."""

from tformer.config import ModelConfig
from tformer.models.base import TransformerModel
from tformer.models.bert import BERT
from tformer.models.gpt import GPT
from tformer.models.heads import (
    TASK_MODELS,
    MultipleChoice,
    QuestionAnswering,
    SequenceClassification,
    TaskModel,
    TokenClassification,
    with_task_head,
)
from tformer.models.outputs import BertOutput, CausalLMOutput, EncoderOutput, Seq2SeqOutput, TaskOutput
from tformer.models.rnn import RNNSearch
from tformer.models.seq2seq import EncoderDecoder

FAMILY_CLASSES: dict[str, type[TransformerModel]] = {
    "gpt": GPT, "bert": BERT, "encoder-decoder": EncoderDecoder, "rnn": RNNSearch}


def build_model(config: ModelConfig) -> TransformerModel:
    """The model of the config's family (GPT, BERT, EncoderDecoder or RNNSearch), freshly initialised; with
    `config.task` set, that task's model (SequenceClassification, ...) on the family's backbone."""
    if config.task is not None:
        return TASK_MODELS[config.task](config)
    return FAMILY_CLASSES[config.family](config)


__all__ = [
    "BERT", "GPT", "BertOutput", "CausalLMOutput", "EncoderDecoder", "EncoderOutput", "FAMILY_CLASSES",
    "MultipleChoice", "QuestionAnswering", "RNNSearch", "Seq2SeqOutput", "SequenceClassification", "TASK_MODELS",
    "TaskModel", "TaskOutput", "TokenClassification", "TransformerModel", "build_model", "with_task_head",
]
