"""Fine-tuning heads on the GPT and BERT backbones (the seed's downstream tasks).

BERT (Devlin et al. 2019, section 4) puts a linear layer on the pooled [CLS] state for sentence-level tasks
and on every token's state for token-level ones; the input is `[CLS] A [SEP] B [SEP]` with token types.
GPT-1 (Radford et al. 2018, section 3.3) changes the input instead: `<start> ... <extract>`, and a linear
layer reads the last block's state at the extract token. Similarity runs both sentence orders and adds the
two states before the layer; multiple choice runs once per choice; the language-model loss on the same
input stays as an auxiliary loss with weight `lm_weight` (0.5 in the paper).

One class per task, each on either backbone; the parameter names, dropout and losses are those of
`transformers`' `BertForSequenceClassification` / `...MultipleChoice` / `...TokenClassification` /
`...QuestionAnswering`, so a saved BERT task model loads there with the same logits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import ModelConfig
from tformer.losses import IGNORE_INDEX, token_cross_entropy
from tformer.models.base import TransformerModel
from tformer.models.bert import BERT
from tformer.models.gpt import GPT
from tformer.models.outputs import TaskOutput


@dataclass
class _Encoded:
    hidden: Tensor  # (rows, length, d_model): the last block's states
    pooled: Tensor | None  # (rows, d_model): BERT's pooler output
    lm_logits: Tensor | None  # (rows, length, vocab): GPT's next-token logits, when the auxiliary loss needs them
    hidden_states: tuple[Tensor, ...] | None
    attentions: tuple[Tensor, ...] | None


class TaskModel(TransformerModel):
    """A GPT or BERT backbone (`.backbone`) with a linear task head; the base of the four task classes.

    Every task model takes input_ids, attention_mask (1 = token, 0 = padding), token_type_ids (BERT; GPT takes
    only all-zero ones, having none) and position_ids, as the backbones do, and returns a `TaskOutput`.
    With labels, `loss` is the mean task loss (plus lm_weight times GPT-1's mean LM loss, also in `lm_loss`);
    `loss_reduction="sum"` gives instead the task loss summed over its items and, apart, the LM loss summed over its
    tokens, for a trainer that divides each by its count over a whole step.
    """

    task: ClassVar[str]
    uses_pooler: ClassVar[bool] = False  # BERT heads on [CLS] read the pooler; per-token heads do not have one

    def __init__(self, config: ModelConfig) -> None:
        if config.task is None:
            config = config.replace(task=self.task)
        if config.task != self.task:
            raise ValueError(f"{type(self).__name__} is the {self.task!r} head but the config has "
                             f"task={config.task!r}; build it with tformer.build_model(config)")
        if config.family == "bert":  # the task model's config describes its weights: no pre-training heads
            config = config.replace(pretraining_heads=False, pooler=self.uses_pooler)
        if config.task == "sequence-classification" and config.num_labels == 1 and config.problem_type is None:
            config = config.replace(problem_type="regression")
        super().__init__(config)
        self.backbone: GPT | BERT = GPT(config) if config.family == "gpt" else BERT(config)
        self.dropout = nn.Dropout(config.dropout if config.classifier_dropout is None else config.classifier_dropout)

    def _init_head(self, linear: nn.Linear) -> nn.Linear:
        nn.init.normal_(linear.weight, std=self.config.init_std)
        nn.init.zeros_(linear.bias)
        return linear

    @property
    def _is_gpt(self) -> bool:
        return self.config.family == "gpt"

    def _encode(self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None,
                position_ids: Tensor | None, *, training_lm: bool, output_attentions: bool,
                output_hidden_states: bool) -> _Encoded:
        """Run the backbone on (rows, length) inputs."""
        if self._is_gpt:
            if token_type_ids is not None and token_type_ids.numel() and bool(token_type_ids.any()):
                raise ValueError("token_type_ids has non-zero types, but GPT has no token types; GPT-1 separates the "
                                 "texts with its delimiter token instead (tformer.tasks.GPTInputs builds that layout)")
            want_lm = training_lm and self.config.lm_weight > 0
            out = self.backbone(input_ids, attention_mask, position_ids, output_attentions=output_attentions,
                                output_hidden_states=True, logits_to_keep=0 if want_lm else 1)
            assert out.hidden_states is not None
            return _Encoded(out.hidden_states[-1], None, out.logits if want_lm else None,
                            out.hidden_states if output_hidden_states else None, out.attentions)
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return _Encoded(out.last_hidden_state, out.pooled_output, None, out.hidden_states, out.attentions)

    def _sequence_vectors(self, encoded: _Encoded, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        """(rows, d_model): BERT's pooled [CLS] state, or GPT's last-block state at the extract token."""
        if encoded.pooled is not None:
            return encoded.pooled
        positions = extract_positions(input_ids, attention_mask, self.config.extract_token_id)
        return encoded.hidden[torch.arange(input_ids.size(0), device=input_ids.device), positions]

    def _with_lm_loss(self, task_loss: Tensor | None, encoded: _Encoded, input_ids: Tensor,
                      attention_mask: Tensor | None, reduction: str) -> tuple[Tensor | None, Tensor | None]:
        """(total loss, auxiliary LM loss): GPT-1's L3 = L2 + lm_weight * L1, on the task's own input.

        reduction="sum" returns the two sums apart (the task's over its items, the LM's over its tokens): each is
        divided by its own count over a whole training step before they are weighted and added."""
        if task_loss is None or encoded.lm_logits is None:
            return task_loss, None
        targets = input_ids if attention_mask is None else input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        auxiliary = token_cross_entropy(encoded.lm_logits, targets, shift=True, reduction=reduction)
        if reduction == "sum":
            return task_loss, auxiliary
        return task_loss + self.config.lm_weight * auxiliary, auxiliary


def _flatten_choices(name: str, tensor: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """(batch, k, length) -> (batch * k, length), after checking it matches input_ids."""
    if tensor is None:
        return None
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} but input_ids has {shape}; give one per token")
    return tensor.reshape(-1, tensor.size(-1))


class SequenceClassification(TaskModel):
    """Sentence (or sentence-pair) classification and regression: input_ids (batch, length) -> logits
    (batch, num_labels). BERT: dropout + linear on the pooled [CLS] state. GPT: on the extract token's state;
    input_ids (batch, 2, length) are a similarity pair in both orders, whose two states are summed (GPT-1).

    labels (batch,): class ids (cross-entropy; -100 ignored), floats for num_labels=1 (mean squared error), or
    (batch, num_labels) 0/1 floats for problem_type='multi_label_classification' (binary cross-entropy).
    """

    task = "sequence-classification"
    uses_pooler = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = self._init_head(nn.Linear(self.config.d_model, self.config.num_labels))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, labels: Tensor | None = None, *,
                output_attentions: bool = False, output_hidden_states: bool = False,
                loss_reduction: str = "mean") -> TaskOutput:
        orders = 1
        if input_ids.dim() == 3:
            if not self._is_gpt or input_ids.size(1) != 2:
                raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}; sequence classification takes "
                                 "(batch, length), or for a GPT similarity task (batch, 2, length): both orders "
                                 "of the pair (tformer.tasks.GPTInputs.similarity builds them)")
            orders = 2
            shape = tuple(input_ids.shape)
            attention_mask = _flatten_choices("attention_mask", attention_mask, shape)
            position_ids = _flatten_choices("position_ids", position_ids, shape)
            input_ids = input_ids.reshape(-1, input_ids.size(-1))
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, training_lm=labels is not None,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        vectors = self._sequence_vectors(encoded, input_ids, attention_mask)
        if orders == 2:
            vectors = vectors.view(-1, 2, vectors.size(-1)).sum(dim=1)
        logits = self.classifier(self.dropout(vectors))
        loss = None if labels is None else self._loss(logits, labels, loss_reduction)
        loss, auxiliary = self._with_lm_loss(loss, encoded, input_ids, attention_mask, loss_reduction)
        return TaskOutput(logits=logits, loss=loss, lm_loss=auxiliary, hidden_states=encoded.hidden_states,
                          attentions=encoded.attentions)

    def problem_type_for(self, labels: Tensor) -> str:
        """The loss `transformers` picks: regression for one label, else single- or multi-label by label dtype."""
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        integer = labels.dtype in (torch.long, torch.int)
        return "single_label_classification" if integer else "multi_label_classification"

    def _loss(self, logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        batch, num_labels = logits.shape
        problem = self.problem_type_for(labels)
        if problem == "regression":
            if labels.numel() != batch * num_labels:
                raise ValueError(f"labels has shape {tuple(labels.shape)} but regression needs one target per "
                                 f"output: ({batch},) or ({batch}, {num_labels})")
            target = labels.to(logits.dtype).view_as(logits)
            if num_labels == 1:
                return F.mse_loss(logits.squeeze(), target.squeeze(), reduction=reduction)
            return F.mse_loss(logits, target, reduction=reduction)
        if problem == "multi_label_classification":
            if tuple(labels.shape) != (batch, num_labels):
                raise ValueError(f"labels has shape {tuple(labels.shape)} but multi-label classification needs "
                                 f"({batch}, {num_labels}): a 0/1 per class")
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)
        labels = labels.reshape(-1)
        if labels.numel() != batch:
            raise ValueError(f"labels has {labels.numel()} entries for {batch} sequences; give one class id each")
        check_class_ids(labels, num_labels, "num_labels")
        return token_cross_entropy(logits, labels, reduction=reduction)


class MultipleChoice(TaskModel):
    """Multiple choice (SWAG, RACE): input_ids (batch, choices, length), one sequence per choice ->
    logits (batch, choices). Each choice is scored by a linear layer on BERT's pooled [CLS] state or on GPT's
    extract-token state, then the choices compete in a softmax. labels (batch,): the right choice's index."""

    task = "multiple-choice"
    uses_pooler = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = self._init_head(nn.Linear(self.config.d_model, 1))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, labels: Tensor | None = None, *,
                output_attentions: bool = False, output_hidden_states: bool = False,
                loss_reduction: str = "mean") -> TaskOutput:
        if input_ids.dim() != 3:
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)} but multiple choice needs (batch, "
                             "choices, length): one sequence per choice (tformer.tasks input layouts build it)")
        shape = tuple(input_ids.shape)
        choices = shape[1]
        attention_mask = _flatten_choices("attention_mask", attention_mask, shape)
        token_type_ids = _flatten_choices("token_type_ids", token_type_ids, shape)
        position_ids = _flatten_choices("position_ids", position_ids, shape)
        input_ids = input_ids.reshape(-1, shape[-1])
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, training_lm=labels is not None,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        vectors = self._sequence_vectors(encoded, input_ids, attention_mask)
        logits = self.classifier(self.dropout(vectors)).view(-1, choices)
        loss = None
        if labels is not None:
            labels = labels.reshape(-1)
            if labels.numel() != shape[0]:
                raise ValueError(f"labels has {labels.numel()} entries for {shape[0]} questions; give the index of "
                                 "the right choice for each")
            check_class_ids(labels, choices, "choices")
            loss = token_cross_entropy(logits, labels, reduction=loss_reduction)
        loss, auxiliary = self._with_lm_loss(loss, encoded, input_ids, attention_mask, loss_reduction)
        return TaskOutput(logits=logits, loss=loss, lm_loss=auxiliary, hidden_states=encoded.hidden_states,
                          attentions=encoded.attentions)


class TokenClassification(TaskModel):
    """Token classification (NER, POS): input_ids (batch, length) -> logits (batch, length, num_labels), a
    linear layer on every token's state (after dropout). labels (batch, length): class ids, -100 ignored
    (padding, special tokens, word pieces after the first)."""

    task = "token-classification"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = self._init_head(nn.Linear(self.config.d_model, self.config.num_labels))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, labels: Tensor | None = None, *,
                output_attentions: bool = False, output_hidden_states: bool = False,
                loss_reduction: str = "mean") -> TaskOutput:
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, training_lm=labels is not None,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(encoded.hidden))
        loss = None
        if labels is not None:
            if tuple(labels.shape) != tuple(input_ids.shape):
                raise ValueError(f"labels has shape {tuple(labels.shape)} but input_ids has "
                                 f"{tuple(input_ids.shape)}; give one label per token (-100 to ignore one)")
            check_class_ids(labels, self.config.num_labels, "num_labels")
            loss = token_cross_entropy(logits, labels, reduction=loss_reduction)
        loss, auxiliary = self._with_lm_loss(loss, encoded, input_ids, attention_mask, loss_reduction)
        return TaskOutput(logits=logits, loss=loss, lm_loss=auxiliary, hidden_states=encoded.hidden_states,
                          attentions=encoded.attentions)


class QuestionAnswering(TaskModel):
    """Extractive question answering (SQuAD): input_ids (batch, length) -> start_logits and end_logits
    (batch, length), a linear layer with two outputs on every token's state. start_positions / end_positions
    (batch,): token indices of the answer span; those outside the input are ignored (as `transformers` does),
    and the loss is the mean of the start and end cross-entropies."""

    task = "question-answering"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.qa_outputs = self._init_head(nn.Linear(self.config.d_model, 2))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                position_ids: Tensor | None = None, start_positions: Tensor | None = None,
                end_positions: Tensor | None = None, *, output_attentions: bool = False,
                output_hidden_states: bool = False, loss_reduction: str = "mean") -> TaskOutput:
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give start_positions and end_positions together (or neither, for inference)")
        training = start_positions is not None
        encoded = self._encode(input_ids, attention_mask, token_type_ids, position_ids, training_lm=training,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        start, end = self.qa_outputs(encoded.hidden).split(1, dim=-1)
        start_logits, end_logits = start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            batch, length = start_logits.shape
            for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
                if positions.numel() != batch:
                    raise ValueError(f"{name} has shape {tuple(positions.shape)}; give one token index per "
                                     f"sequence: ({batch},)")
            # Positions outside the input (the answer was cut off) are clamped to `length` and ignored.
            first = start_positions.reshape(-1).clamp(0, length)
            last = end_positions.reshape(-1).clamp(0, length)
            loss = (F.cross_entropy(start_logits.float(), first, ignore_index=length, reduction=loss_reduction)
                    + F.cross_entropy(end_logits.float(), last, ignore_index=length, reduction=loss_reduction)) / 2
        loss, auxiliary = self._with_lm_loss(loss, encoded, input_ids, attention_mask, loss_reduction)
        return TaskOutput(loss=loss, start_logits=start_logits, end_logits=end_logits, lm_loss=auxiliary,
                          hidden_states=encoded.hidden_states, attentions=encoded.attentions)


TASK_MODELS: dict[str, type[TaskModel]] = {
    cls.task: cls for cls in (SequenceClassification, MultipleChoice, TokenClassification, QuestionAnswering)
}


def check_class_ids(labels: Tensor, count: int, what: str) -> None:
    """Class ids must lie in [0, count) or be -100 (ignored); else one error naming the id and the fix."""
    if labels.is_floating_point():
        raise ValueError(f"labels have dtype {labels.dtype} but this loss needs integer class ids (torch.long)")
    if not labels.numel() or torch.compiler.is_compiling():
        return
    bad = labels[(labels != IGNORE_INDEX) & ((labels < 0) | (labels >= count))]
    if bad.numel():
        value = int(bad[0])
        fix = (f"set num_labels={value + 1} (or more) or map the labels to 0..{count - 1}" if what == "num_labels"
               else f"give the index of the right choice, 0..{count - 1}")
        raise ValueError(f"label {value} is outside [0, {count}) ({what}={count}); {fix}; -100 marks one to ignore")


def extract_positions(input_ids: Tensor, attention_mask: Tensor | None, extract_token_id: int | None) -> Tensor:
    """(batch,) index of the state GPT's head reads: the last `extract_token_id` of each row when the config has
    one, else the last real token (attention_mask 1; with no mask, the last position)."""
    if extract_token_id is None and attention_mask is None:
        return torch.full((input_ids.size(0),), input_ids.size(1) - 1, dtype=torch.long, device=input_ids.device)
    if extract_token_id is not None:
        hits = input_ids == extract_token_id
        if attention_mask is not None:
            hits &= attention_mask.bool()
        what = f"no extract token (id {extract_token_id}); end each sequence with it (tformer.tasks.GPTInputs does)"
    else:
        hits = attention_mask.bool()
        what = "no token (attention_mask is all 0); drop empty rows"
    empty = ~hits.any(dim=1)
    if empty.any():
        raise ValueError(f"row {int(empty.nonzero()[0])} of input_ids has {what}")
    return hits.size(1) - 1 - hits.flip(1).int().argmax(dim=1)


def with_task_head(model: TransformerModel, task: str, **fields: object) -> TaskModel:
    """A task model on `model`'s weights, the head freshly initialised: `with_task_head(bert, "multiple-choice")`.

    `fields` set the task's ModelConfig fields (num_labels=3, id2label=..., lm_weight=...). Pre-training heads
    are left behind; backbone tensors the source lacks (e.g. BERT's pooler) stay initialised and are named in
    a warning.
    """
    if task not in TASK_MODELS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASK_MODELS)}")
    source = model.backbone if isinstance(model, TaskModel) else model
    fields = dict(fields)
    if task == "question-answering":
        fields.setdefault("num_labels", 2)
    if task != source.config.task or fields.get("num_labels", source.config.num_labels) != source.config.num_labels:
        fields.setdefault("id2label", None)  # the old head's class names and loss were for other classes
        fields.setdefault("problem_type", None)
    head_model = TASK_MODELS[task](source.config.replace(task=task, **fields))
    state = source.state_dict()
    target = head_model.backbone.state_dict()
    copied = {n: t for n, t in state.items() if n in target and t.shape == target[n].shape}
    head_model.backbone.load_state_dict(copied, strict=False)
    fresh = [n for n in target if n not in copied]
    if fresh:
        warnings.warn(f"{len(fresh)} backbone tensors were not in the source model and are newly initialised, "
                      f"e.g. {fresh[0]!r}; train before use", stacklevel=2)
    return head_model.train(model.training)
