"""RNNsearch (Bahdanau, Cho and Bengio 2014, arXiv 1409.0473): the encoder-decoder with attention that the
Transformer replaced; notes 001 ("RNN Comparison") and 002 (cross-attention "is the same as in the 2014 paper").

The paper's equations (Appendix A.2), in its order, with the names of this file:

Encoder: a bidirectional RNN over the source x_1 .. x_Tx (`source_embeddings`, `encoder`):

    ->h_j = GRU(E x_j, ->h_{j-1})         forward direction, left to right
    <-h_j = GRU(E x_j, <-h_{j+1})         backward direction, right to left
    h_j   = [->h_j ; <-h_j]                the annotation of source word j (2 * hidden_size)

Decoder: a GRU whose state s attends over the annotations at every step i (`init_state`, `attention`,
`decoder_cells`, `deep_output`, `lm_head`):

    s_0      = tanh(W_s <-h_1)                            initial state from the first backward annotation
    e_ij     = v_a^T tanh(W_a s_{i-1} + U_a h_j)          alignment model (layers/additive_attention.py)
    alpha_ij = exp(e_ij) / sum_k exp(e_ik)
    c_i      = sum_j alpha_ij h_j                         context vector
    t~_i     = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i      deep output, 2 * maxout_size units
    t_i,j    = max(t~_i,2j-1 , t~_i,2j)                   maxout, maxout_size units
    p(y_i | y_<i, x) = softmax(W_o t_i)                   W_o: `lm_head` (tied to E when tie_word_embeddings)
    s_i      = GRU(s_{i-1}, [E y_{i-1} ; c_i])            the new state, read by step i + 1

y_0 is `decoder_start_token_id`; training reads the labels shifted right (teacher forcing), as `EncoderDecoder`.

Where this differs from the paper, and why:
* The GRU is torch's (`nn.GRU`, `nn.GRUCell`: the cuDNN / oneDNN kernels): its candidate state applies the reset
  gate after the recurrent product, tanh(W x + r * (U s + b)), where the paper has tanh(W x + U (r * s)); its
  update gate z keeps the old state, s_i = (1 - z) * s~ + z * s_{i-1}, where the paper's z takes the new one (the
  same functions, z relabelled 1 - z); and it has biases in every gate (the paper's equations leave the biases
  out).
* The source is read as packed sequences (`pack_padded_sequence`): a padded source gives the states of the
  unpadded one (to float rounding), the backward direction starting at each row's last real token. Pads get no
  attention weight.
* Options the paper does not have: `cell="lstm"` (nn.LSTM / nn.LSTMCell; the cell state starts at zero, the
  hidden state as s_0 above), `n_layers` stacked encoder layers (their top layer's states are the h_j),
  `n_decoder_layers` stacked decoder cells (the top layer's state is the s that attends and feeds t~; every layer
  starts from W_s <-h_1, one block of W_s each), one embedding table shared by source and target
  (`share_encoder_decoder_embeddings`) and W_o tied to it, `dropout` on the embeddings, between stacked layers and
  on t_i (the `rnnsearch` preset sets it to 0), maxout_size=0 (t_i = t~_i, d_model units, no maxout).
* Initialisation as the paper's Appendix B.1 with its two scales taken from `init_std` (paper: 0.01): W_a and
  U_a normal(init_std / 10), v_a and the biases 0, the recurrent matrices orthogonal (one block per gate), every
  other weight normal(init_std).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tformer.config import MAXOUT_PIECES, ModelConfig
from tformer.data.seq2seq import shift_right
from tformer.layers.additive_attention import AdditiveAttention
from tformer.layers.cache import RecurrentCache
from tformer.losses import token_cross_entropy
from tformer.models.base import TransformerModel, check_input_ids
from tformer.models.outputs import EncoderOutput, Seq2SeqOutput

State = tuple[Tensor, ...]  # (h,) for a GRU, (h, c) for an LSTM; each (layers, batch, hidden_size)


class RNNSearch(TransformerModel):
    """RNNsearch: source ids (batch, source len) + decoder ids (batch, target len) -> logits (batch, target len,
    vocab), with `EncoderDecoder`'s call signature; the cross-attention weights are one head (batch, 1, target,
    source).

    A bidirectional GRU (or LSTM) encoder, a GRU (LSTM) decoder with Bahdanau's additive attention, a maxout
    deep output and the vocabulary projection. Decoding keeps its state in a `RecurrentCache` (`new_cache()`).
    """

    def __init__(self, config: ModelConfig) -> None:
        if config.family != "rnn":
            raise ValueError(f"RNNSearch needs family='rnn', got family={config.family!r}")
        super().__init__(config)
        hidden, width = config.hidden_size, config.d_model
        self.source_embeddings = nn.Embedding(config.vocab_size, width)
        self.target_embeddings = (self.source_embeddings if config.share_encoder_decoder_embeddings
                                  else nn.Embedding(config.vocab_size, width))
        recurrent = nn.GRU if config.cell == "gru" else nn.LSTM
        self.encoder = recurrent(width, hidden, num_layers=config.n_layers, bidirectional=True, batch_first=True,
                                 dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.init_state = nn.Linear(hidden, hidden * config.decoder_layers)  # W_s, one block per decoder layer
        self.attention = AdditiveAttention(hidden, 2 * hidden, config.alignment_size)
        cell = nn.GRUCell if config.cell == "gru" else nn.LSTMCell
        self.decoder_cells = nn.ModuleList(
            [cell(width + 2 * hidden if layer == 0 else hidden, hidden) for layer in range(config.decoder_layers)])
        # [U_o V_o C_o] as one matrix over [s_{i-1}; E y_{i-1}; c_i], with one bias.
        pieces = MAXOUT_PIECES if config.maxout_size else 1
        self.deep_output = nn.Linear(hidden + width + 2 * hidden, pieces * config.output_size)
        self.lm_head = nn.Linear(config.output_size, config.vocab_size, bias=False)  # W_o
        self.dropout = nn.Dropout(config.dropout)
        self._init_paper_weights()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.target_embeddings.weight

    def _init_paper_weights(self) -> None:
        """Appendix B.1's initialisation, with init_std for its 0.01 (see the module docstring)."""
        std = self.config.init_std
        self.init_weights()  # every nn.Linear and nn.Embedding normal(std), biases 0
        with torch.no_grad():
            nn.init.normal_(self.attention.query_proj.weight, std=std / 10)
            nn.init.normal_(self.attention.key_proj.weight, std=std / 10)
            nn.init.zeros_(self.attention.score.weight)
            gates = 3 if self.config.cell == "gru" else 4
            for name, parameter in [*self.encoder.named_parameters(), *self.decoder_cells.named_parameters()]:
                if "bias" in name:
                    nn.init.zeros_(parameter)
                elif "weight_hh" in name and not parameter.is_meta:  # QR has no meta kernel: counts build on meta
                    for block in parameter.chunk(gates, dim=0):
                        nn.init.orthogonal_(block)
                else:
                    nn.init.normal_(parameter, std=std)

    def new_cache(self) -> RecurrentCache:
        """The decoding cache: the decoder state after the tokens read so far, and the attention keys U h_j."""
        return RecurrentCache(n_layers=1)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
               output_attentions: bool = False, output_hidden_states: bool = False) -> EncoderOutput:
        """Source ids (batch, source len), right-padded under attention_mask (1 = token) -> the annotations h_j
        (batch, source len, 2 * hidden_size): [forward; backward] states of the top layer, 0 at pads.

        An RNN encoder has no attention of its own: output_attentions gives none.
        """
        _check_ids(input_ids, self.config.vocab_size, "input_ids")
        embedded = self.dropout(self.source_embeddings(input_ids))
        lengths = _source_lengths(attention_mask, input_ids.shape)
        if lengths is None:
            states, _ = self.encoder(embedded)
        else:
            packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            states, _ = pad_packed_sequence(self.encoder(packed)[0], batch_first=True,
                                            total_length=input_ids.size(1))
        return EncoderOutput(last_hidden_state=states, hidden_states=(states,) if output_hidden_states else None)

    def initial_state(self, memory: Tensor) -> State:
        """s_0 = tanh(W_s <-h_1) for every decoder layer, from the annotations (batch, source, 2 * hidden)."""
        hidden, layers = self.config.hidden_size, self.config.decoder_layers
        first_backward = memory[:, 0, hidden:]
        h = torch.tanh(self.init_state(first_backward)).view(-1, layers, hidden).transpose(0, 1).contiguous()
        return (h,) if self.config.cell == "gru" else (h, torch.zeros_like(h))

    def forward(
        self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None, *, encoder_outputs: EncoderOutput | None = None,
        cache: RecurrentCache | None = None, output_attentions: bool = False, output_hidden_states: bool = False,
        logits_to_keep: int = 0, cache_position: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """As `EncoderDecoder.forward`. attention_mask: source padding (1 = token, right-padded). The decoder reads
        its tokens in order, so pads after a row's last token change none of its earlier logits: a
        decoder_attention_mask may mark them (right padding) and is otherwise not needed.

        With a cache (`new_cache()`) the decoder continues from the state after the tokens it has read; the new
        tokens follow them (cache_position, if given, names them: (new len,), not read back). Given labels and no
        decoder_input_ids, the decoder reads the labels shifted right from the start token (teacher forcing);
        the loss is the mean token cross-entropy, as EncoderDecoder's. logits_to_keep=n: the last n only.
        """
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("pass input_ids (the source) or encoder_outputs from model.encode(...)")
            encoder_outputs = self.encode(input_ids, attention_mask, output_hidden_states=output_hidden_states)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids (the target so far) or labels (the whole target)")
            decoder_input_ids = shift_right(labels, self._special_id("pad_token_id"),
                                            self._special_id("decoder_start_token_id"))
        if logits_to_keep and labels is not None:
            raise ValueError("logits_to_keep needs labels=None: the loss reads the logits of every position")
        memory = encoder_outputs.last_hidden_state
        self._check_decoder_inputs(decoder_input_ids, decoder_attention_mask, memory, attention_mask, cache,
                                   cache_position)
        if cache is not None:
            keys, memory = cache.cross(0, lambda: (self.attention.project_keys(memory), memory))
        else:
            keys = self.attention.project_keys(memory)
        state = cache.state if cache is not None and cache.state is not None else self.initial_state(memory)
        embedded = self.dropout(self.target_embeddings(decoder_input_ids))
        source_mask = attention_mask.bool() if attention_mask is not None else None
        steps = self._decode(embedded, memory, keys, source_mask, state, keep_last_state=cache is not None)
        if cache is not None:
            cache.write(steps.state, decoder_input_ids.size(1))
        logits = self._logits(steps, embedded, logits_to_keep)
        return Seq2SeqOutput(
            logits=logits,
            loss=token_cross_entropy(logits, labels) if labels is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            decoder_hidden_states=(steps.queries,) if output_hidden_states else None,
            cross_attentions=(steps.weights[:, None],) if output_attentions else None,
            cache=cache,
        )

    def _decode(self, embedded: Tensor, memory: Tensor, keys: Tensor, source_mask: Tensor | None, state: State,
                *, keep_last_state: bool) -> DecodedSteps:
        """The recurrence, one target step at a time: c_i from s_{i-1}, then s_i from [E y_{i-1}; c_i].

        The state after the last token is computed only when `keep_last_state` (a cache carries it on); the
        logits of step i read s_{i-1}, not s_i.
        """
        queries, contexts, weights = [], [], []
        length = embedded.size(1)
        for i in range(length):
            query = state[0][-1]  # s_{i-1} of the top decoder layer
            context, alpha = self.attention(query, keys, memory, source_mask)
            queries.append(query)
            contexts.append(context)
            weights.append(alpha)
            if i < length - 1 or keep_last_state:
                state = self._step(torch.cat([embedded[:, i], context], dim=-1), state)
        return DecodedSteps(torch.stack(queries, 1), torch.stack(contexts, 1), torch.stack(weights, 1), state)

    def _step(self, inputs: Tensor, state: State) -> State:
        """s_i = GRU(s_{i-1}, [E y_{i-1}; c_i]) through the stacked cells (batch, input) -> the new state."""
        new: list[State] = []
        for layer, cell in enumerate(self.decoder_cells):
            if self.config.cell == "gru":
                h = cell(inputs, state[0][layer])
                new.append((h,))
            else:
                h, c = cell(inputs, (state[0][layer], state[1][layer]))
                new.append((h, c))
            inputs = self.dropout(h) if layer + 1 < len(self.decoder_cells) else h
        return tuple(torch.stack(parts) for parts in zip(*new, strict=True))

    def _logits(self, steps: DecodedSteps, embedded: Tensor, logits_to_keep: int) -> Tensor:
        """The deep output t_i = maxout(U_o s_{i-1} + V_o E y_{i-1} + C_o c_i), then W_o t_i: (batch, kept, vocab)."""
        kept = slice(-logits_to_keep, None) if logits_to_keep else slice(None)
        t = self.deep_output(torch.cat([steps.queries[:, kept], embedded[:, kept], steps.contexts[:, kept]], dim=-1))
        if self.config.maxout_size:
            t = t.view(*t.shape[:-1], self.config.maxout_size, MAXOUT_PIECES).amax(dim=-1)
        return self.lm_head(self.dropout(t))

    def _check_decoder_inputs(self, decoder_input_ids: Tensor, decoder_attention_mask: Tensor | None,
                              memory: Tensor, attention_mask: Tensor | None, cache: RecurrentCache | None,
                              cache_position: Tensor | None) -> None:
        _check_ids(decoder_input_ids, self.config.vocab_size, "decoder_input_ids", check_values=cache_position is None)
        batch, length = decoder_input_ids.shape
        if length == 0:
            raise ValueError("decoder_input_ids has no tokens: give at least the start token")
        if cache_position is not None and cache_position.numel() != length:
            raise ValueError(f"cache_position names {cache_position.numel()} positions for {length} new decoder "
                             "tokens; give one position per token")
        width = 2 * self.config.hidden_size
        if memory.dim() != 3 or memory.size(0) != batch or memory.size(2) != width:
            raise ValueError(f"encoder_outputs.last_hidden_state has shape {tuple(memory.shape)} but {batch} decoder "
                             f"rows need (batch={batch}, source, 2 * hidden_size={width}); pass model.encode(...) of "
                             "this model")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(memory.shape[:2]):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the source has "
                             f"{tuple(memory.shape[:2])} (batch, source len); 1 marks a token, 0 padding")
        if decoder_attention_mask is not None and cache is None and not torch.compiler.is_compiling():
            if tuple(decoder_attention_mask.shape) != (batch, length):
                raise ValueError(f"decoder_attention_mask has shape {tuple(decoder_attention_mask.shape)} but "
                                 f"decoder_input_ids has {(batch, length)}; 1 marks a token, 0 padding")
            if _has_left_padding(decoder_attention_mask):
                raise ValueError("decoder_attention_mask has a 0 before a 1: the RNN decoder reads right-padded "
                                 "targets only (pads after the last token)")

    def _special_id(self, name: str) -> int:
        value = getattr(self.config, name)
        if value is None:
            raise ValueError(f"labels without decoder_input_ids need config.{name} to build the decoder inputs")
        return value


@dataclass
class DecodedSteps:
    """What the decoder loop produced per target step i: the states s_{i-1} it attended from (batch, target,
    hidden), the contexts c_i (batch, target, 2 * hidden), the weights alpha_i (batch, target, source), and the
    state after the last step (`state`, only as far as computed)."""

    queries: Tensor
    contexts: Tensor
    weights: Tensor
    state: State


def _check_ids(ids: Tensor, vocab_size: int, name: str, *, check_values: bool = True) -> None:
    """(batch, length) integer ids inside the vocabulary; any length: an RNN has no position table."""
    check_input_ids(ids, vocab_size, max_positions=ids.size(-1) if ids.dim() else 0, name=name,
                    check_values=check_values)


def _has_left_padding(mask: Tensor) -> bool:
    real = mask.bool()
    return bool((real[:, 1:] & ~real[:, :-1]).any())


def _source_lengths(attention_mask: Tensor | None, shape: torch.Size) -> Tensor | None:
    """Each row's real-token count (batch,) on the CPU for `pack_padded_sequence`, or None without padding.

    A row with no token at all is read as one token long (its pad): its attention weights are all zero anyway.
    """
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(shape)}; "
                         "1 marks a token, 0 padding")
    if bool(attention_mask.bool().all()):
        return None
    if _has_left_padding(attention_mask):
        raise ValueError("attention_mask has a 0 before a 1: the RNN encoder reads right-padded sources (pads after "
                         "each row's last token), as the seq2seq batches are")
    return attention_mask.bool().sum(dim=1).clamp(min=1).cpu()
