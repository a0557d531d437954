"""Translate between Hugging Face `config.json` fields and tformer's `ModelConfig`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tformer.config import ModelConfig

# Hugging Face activation names -> ours. ("gelu" is the exact erf form there too; "gelu_new" is tanh.)
ACTIVATIONS_FROM_HF = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
    "swish": "silu", "silu": "silu",
}
ACTIVATIONS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "swish"}
# openai-gpt keeps its own table, in which "gelu" is the tanh form and the erf form is missing.
GPT1_ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
# The `transformers` class of each BERT task model; its head tensors are `classifier.*` or `qa_outputs.*`.
# The RNN family has no Hugging Face model: its folders carry this tformer-native model_type, their tensors under
# tformer's own names and the ModelConfig under "tformer_config" (which only tformer reads).
RNN_MODEL_TYPE = "tformer-rnnsearch"
# A GPT with local or memory-compressed layers (the T-DMCA, `attention_pattern`) has no Hugging Face model either:
# its folders carry this model_type, tformer's tensor names and "tformer_config", like the RNN's.
TDMCA_MODEL_TYPE = "tformer-tdmca"
NATIVE_MODEL_TYPES = (RNN_MODEL_TYPE, TDMCA_MODEL_TYPE)
BERT_TASK_ARCHITECTURES = {
    "sequence-classification": "BertForSequenceClassification", "multiple-choice": "BertForMultipleChoice",
    "token-classification": "BertForTokenClassification", "question-answering": "BertForQuestionAnswering",
}


def _activation(name: str, field: str) -> str:
    if name not in ACTIVATIONS_FROM_HF:
        raise ValueError(f"{field}={name!r} has no tformer equivalent; supported: {', '.join(ACTIVATIONS_FROM_HF)}")
    return ACTIVATIONS_FROM_HF[name]


def _gpt1_activation(name: str) -> str:
    if name not in GPT1_ACTIVATIONS:
        raise ValueError(f"afn={name!r} has no tformer equivalent; supported: {', '.join(GPT1_ACTIVATIONS)}")
    return GPT1_ACTIVATIONS[name]


def _token_id(value: Any) -> int | None:
    return value[0] if isinstance(value, list) else value


def config_from_hf(hf: dict[str, Any], state: dict[str, Tensor]) -> ModelConfig:
    """ModelConfig for a Hugging Face config.json; `state` (prefix-free names) tells which heads exist."""
    model_type = hf["model_type"]
    ids = dict(pad_token_id=_token_id(hf.get("pad_token_id")), bos_token_id=_token_id(hf.get("bos_token_id")),
               eos_token_id=_token_id(hf.get("eos_token_id")))
    if model_type in ("gpt2", "openai-gpt"):
        if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
            raise ValueError("GPT-2 configs with scale_attn_weights=False or scale_attn_by_inverse_layer_idx=True "
                             "are not supported; tformer scales attention by 1/sqrt(d_k) only")
        if hf.get("add_cross_attention", False):
            raise ValueError("GPT-2 with add_cross_attention=True is not supported")
        gpt2 = model_type == "gpt2"
        return ModelConfig(
            family="gpt", vocab_size=hf["vocab_size"], d_model=hf["n_embd"], n_layers=hf["n_layer"],
            n_heads=hf["n_head"], d_ff=hf.get("n_inner") if gpt2 else None, max_positions=hf["n_positions"],
            positions="learned",
            activation=(_activation(hf.get("activation_function", "gelu_new"), "activation_function") if gpt2
                        else _gpt1_activation(hf.get("afn", "gelu"))),
            norm="pre" if gpt2 else "post", final_norm=gpt2,
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), dropout=hf.get("resid_pdrop", 0.1),
            attention_dropout=hf.get("attn_pdrop", 0.1), init_std=hf.get("initializer_range", 0.02),
            tie_word_embeddings=hf.get("tie_word_embeddings", True), **_in_vocab(ids, hf["vocab_size"]),
        )
    if model_type == "bert":
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type={hf['position_embedding_type']!r} is not supported; "
                             "tformer's BERT uses absolute learned positions")
        return ModelConfig(
            family="bert", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"],
            max_positions=hf["max_position_embeddings"], positions="learned",
            activation=_activation(hf.get("hidden_act", "gelu"), "hidden_act"), norm="post", final_norm=False,
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12), embedding_norm=True,
            type_vocab_size=hf.get("type_vocab_size", 2), dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), init_std=hf.get("initializer_range", 0.02),
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
            pooler="pooler.dense.weight" in state, pretraining_heads="cls.predictions.bias" in state,
            **_in_vocab(ids, hf["vocab_size"]), **_task_from_hf(hf),
        )
    if model_type == "marian":
        for ours, theirs in (("encoder_attention_heads", "decoder_attention_heads"),
                             ("encoder_ffn_dim", "decoder_ffn_dim")):
            if hf.get(ours) != hf.get(theirs):
                raise ValueError(f"{ours}={hf.get(ours)} differs from {theirs}={hf.get(theirs)}; "
                                 "tformer's encoder-decoder uses one value for both")
        decoder_vocab = hf.get("decoder_vocab_size")
        if decoder_vocab not in (None, hf["vocab_size"]):
            raise ValueError(f"decoder_vocab_size={decoder_vocab} differs from vocab_size={hf['vocab_size']}; "
                             "tformer's encoder-decoder has one vocabulary")
        return ModelConfig(
            family="encoder-decoder", vocab_size=hf["vocab_size"], d_model=hf["d_model"],
            n_layers=hf["encoder_layers"], n_decoder_layers=hf["decoder_layers"],
            n_heads=hf["encoder_attention_heads"], d_ff=hf["encoder_ffn_dim"],
            max_positions=hf["max_position_embeddings"], positions="sinusoidal", sinusoidal_layout="halves",
            activation=_activation(hf.get("activation_function", "gelu"), "activation_function"), norm="post",
            final_norm=False, layer_norm_eps=1e-5, scale_embeddings=hf.get("scale_embedding", False),
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
            share_encoder_decoder_embeddings=hf.get("share_encoder_decoder_embeddings", True),
            final_logits_bias=True, dropout=hf.get("dropout", 0.1),
            attention_dropout=hf.get("attention_dropout", 0.0), activation_dropout=hf.get("activation_dropout", 0.0),
            init_std=hf.get("init_std", 0.02),
            decoder_start_token_id=_token_id(hf.get("decoder_start_token_id")), **_in_vocab(ids, hf["vocab_size"]),
        )
    if model_type in NATIVE_MODEL_TYPES:
        raise ValueError(f"a {model_type} config.json keeps its ModelConfig under \"tformer_config\", which is "
                         "missing; save the model again with tformer.save_pretrained")
    raise ValueError(f"model_type {model_type!r} is not supported; tformer reads gpt2, openai-gpt, bert, marian, "
                     f"{', '.join(NATIVE_MODEL_TYPES)}")


def _task_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """The task fields of a BertFor... config.json (none for other architectures)."""
    tasks = {architecture: task for task, architecture in BERT_TASK_ARCHITECTURES.items()}
    task = next((tasks[a] for a in hf.get("architectures") or () if a in tasks), None)
    if task is None:
        return {}
    id2label = hf.get("id2label")
    return {"task": task, "num_labels": len(id2label) if id2label else hf.get("num_labels", 2),
            "id2label": id2label or None, "problem_type": hf.get("problem_type"),
            "classifier_dropout": hf.get("classifier_dropout")}


def _task_to_hf(config: ModelConfig) -> dict[str, Any]:
    """num_labels, id2label and label2id as `transformers` reads them, and the classification loss and dropout."""
    labels = config.labels
    return {"num_labels": config.num_labels, "id2label": {str(i): name for i, name in labels.items()},
            "label2id": {name: i for i, name in labels.items()}, "problem_type": config.problem_type,
            "classifier_dropout": config.classifier_dropout}


def _in_vocab(ids: dict[str, int | None], vocab_size: int) -> dict[str, int | None]:
    # Some configs carry ids of tokens outside the vocabulary (tiny test models); they mean "none".
    return {k: (v if v is not None and 0 <= v < vocab_size else None) for k, v in ids.items()}


def _rnn_config_json(config: ModelConfig) -> dict[str, Any]:
    """A tformer-rnnsearch config.json: the sizes for people reading the file (no transformers class reads it),
    the special ids, and the ModelConfig under "tformer_config", which tformer reads."""
    return {"model_type": RNN_MODEL_TYPE, "pad_token_id": config.pad_token_id, "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id, "tformer_config": config.to_dict(), "vocab_size": config.vocab_size,
            "embedding_size": config.d_model, "cell": config.cell,
            "hidden_size": config.hidden_size, "alignment_size": config.alignment_size,
            "maxout_size": config.maxout_size, "encoder_layers": config.n_layers,
            "decoder_layers": config.decoder_layers, "tie_word_embeddings": config.tie_word_embeddings,
            "decoder_start_token_id": config.decoder_start_token_id, "is_encoder_decoder": True,
            "architectures": ["RNNSearch"]}


def _tdmca_config_json(config: ModelConfig) -> dict[str, Any]:
    """A tformer-tdmca config.json: GPT-2's size fields for people reading the file (no transformers class reads
    it), the layer pattern, the special ids, and the ModelConfig under "tformer_config", which tformer reads."""
    return {"model_type": TDMCA_MODEL_TYPE, "pad_token_id": config.pad_token_id, "bos_token_id": config.bos_token_id,
            "eos_token_id": config.eos_token_id, "tformer_config": config.to_dict(), "vocab_size": config.vocab_size,
            "n_positions": config.max_positions, "n_embd": config.d_model, "n_layer": config.n_layers,
            "n_head": config.n_heads, "attention_pattern": config.attention_pattern,
            "local_block_size": config.local_block_size, "local_look_back": config.local_look_back,
            "compression": config.compression, "tie_word_embeddings": config.tie_word_embeddings,
            "architectures": ["TDMCALMHeadModel"]}


def config_to_hf(config: ModelConfig, model_type: str) -> tuple[dict[str, Any], list[str]]:
    """(config.json contents, reasons `transformers` would compute differently from tformer, if any)."""
    if model_type == RNN_MODEL_TYPE:
        return _rnn_config_json(config), []  # transformers has no RNN to compare with
    if model_type == TDMCA_MODEL_TYPE:
        return _tdmca_config_json(config), []  # nor a T-DMCA
    if config.has_long_attention:
        raise ValueError(f"cannot write attention_pattern={config.attention_pattern!r} as a Hugging Face {model_type} "
                         f"folder: HF GPT-2 has no local/compressed attention; save it as a {TDMCA_MODEL_TYPE} "
                         "folder (tformer.save_pretrained does), which tformer.from_pretrained reads")
    return _transformer_config_json(config, model_type)


def _transformer_config_json(config: ModelConfig, model_type: str) -> tuple[dict[str, Any], list[str]]:
    """config_to_hf for the Hugging Face model types: gpt2, openai-gpt, bert, marian."""
    differences = []
    ids = {"pad_token_id": config.pad_token_id, "bos_token_id": config.bos_token_id,
           "eos_token_id": config.eos_token_id}
    activation = ACTIVATIONS_TO_HF[config.activation]
    if model_type in ("gpt2", "openai-gpt"):
        gpt2 = model_type == "gpt2"
        hf: dict[str, Any] = {
            "vocab_size": config.vocab_size, "n_positions": config.max_positions, "n_embd": config.d_model,
            "n_layer": config.n_layers, "n_head": config.n_heads, "layer_norm_epsilon": config.layer_norm_eps,
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.attention_dropout,
            "initializer_range": config.init_std, "tie_word_embeddings": config.tie_word_embeddings,
            "architectures": ["GPT2LMHeadModel" if gpt2 else "OpenAIGPTLMHeadModel"],
        }
        if gpt2:
            hf |= {"n_inner": config.ffn_dim, "activation_function": activation}
            differences += [] if config.final_norm else ["GPT-2 always has a final LayerNorm"]
        else:
            hf |= {"afn": {"gelu_tanh": "gelu", "relu": "relu", "silu": "silu"}.get(config.activation, "gelu")}
            differences += [] if config.activation != "gelu" else ["openai-gpt has no erf GELU (its 'gelu' is tanh)"]
            differences += [] if not config.final_norm else ["GPT-1 has no final LayerNorm"]
            differences += [] if config.ffn_dim == 4 * config.d_model else ["GPT-1's feed-forward is 4*d_model"]
        differences += [] if config.positions == "learned" else ["GPT uses learned positions"]
    elif model_type == "bert":
        hf = {
            "vocab_size": config.vocab_size, "hidden_size": config.d_model, "num_hidden_layers": config.n_layers,
            "num_attention_heads": config.n_heads, "intermediate_size": config.ffn_dim, "hidden_act": activation,
            "hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.attention_dropout,
            "max_position_embeddings": config.max_positions, "type_vocab_size": max(config.type_vocab_size, 1),
            "initializer_range": config.init_std, "layer_norm_eps": config.layer_norm_eps,
            "tie_word_embeddings": config.tie_word_embeddings, "position_embedding_type": "absolute",
            "architectures": [BERT_TASK_ARCHITECTURES[config.task] if config.task
                              else "BertForPreTraining" if config.pretraining_heads else "BertModel"],
        }
        differences += [] if config.norm == "post" and not config.final_norm else ["BERT is post-norm"]
        differences += [] if config.embedding_norm else ["BERT normalises its embeddings"]
        differences += [] if config.type_vocab_size else ["BERT has token-type embeddings"]
        differences += [] if config.positions == "learned" else ["BERT uses learned positions"]
    else:
        hf = {
            "vocab_size": config.vocab_size, "d_model": config.d_model, "encoder_layers": config.n_layers,
            "decoder_layers": config.decoder_layers, "encoder_attention_heads": config.n_heads,
            "decoder_attention_heads": config.n_heads, "encoder_ffn_dim": config.ffn_dim,
            "decoder_ffn_dim": config.ffn_dim, "activation_function": activation,
            "max_position_embeddings": config.max_positions, "scale_embedding": config.scale_embeddings,
            "dropout": config.dropout, "attention_dropout": config.attention_dropout,
            "activation_dropout": config.activation_dropout, "init_std": config.init_std,
            "tie_word_embeddings": config.tie_word_embeddings,
            "share_encoder_decoder_embeddings": config.share_encoder_decoder_embeddings,
            "decoder_start_token_id": config.decoder_start_token_id, "is_encoder_decoder": True,
            "architectures": ["MarianMTModel"],
        }
        if config.positions != "sinusoidal" or config.sinusoidal_layout != "halves":
            differences.append("Marian uses sinusoidal positions in [sin | cos] halves")
        differences += [] if config.norm == "post" and not config.final_norm else ["Marian is post-norm"]
        differences += [] if config.layer_norm_eps == 1e-5 else ["Marian's LayerNorm eps is 1e-5"]
    if config.embedding_norm and model_type != "bert":
        differences.append(f"{model_type} has no embedding LayerNorm")
    if config.scale_embeddings and model_type != "marian":
        differences.append(f"{model_type} does not scale its embeddings")
    if not config.bias:
        differences.append(f"{model_type} has biases in every projection")
    if config.task is not None:  # GPT task models keep their LM architecture: transformers has no GPT-1 heads
        hf |= _task_to_hf(config)
    hf |= {"model_type": model_type, **ids, "tformer_config": config.to_dict()}
    return hf, differences
