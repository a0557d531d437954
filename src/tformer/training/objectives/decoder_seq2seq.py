"""decoder_seq2seq (T-D, Liu et al. 2018): one GPT reads source [SEP] target [EOS]; the loss covers the target."""

from __future__ import annotations

from torch import Tensor, nn

from tformer.interop.generation_config import mark_decoder_seq2seq
from tformer.models.base import TransformerModel
from tformer.training.objectives.causal_lm import CausalLM
from tformer.training.objectives.translation import Translation


class DecoderSeq2Seq(Translation):
    """Rows `input_ids` = source [SEP] target [EOS], `labels` aligned with the positions, -100 off the target."""

    name = "decoder_seq2seq"
    families = ("gpt",)
    decoder_only = True

    def loss(self, model: nn.Module, batch: dict[str, Tensor], totals: dict[str, Tensor]) -> tuple[Tensor, dict]:
        return CausalLM.loss(self, model, batch, totals)  # type: ignore[arg-type] - the same next-token loss

    def finish(self, model: TransformerModel) -> None:
        mark_decoder_seq2seq(model)  # its generation_config.json tells `tformer translate` the T-D layout
