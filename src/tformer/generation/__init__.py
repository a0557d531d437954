"""Generation: greedy decoding, sampling and beam search / N-best on any model with a KV cache."""

from tformer.generation.beam import beam_search
from tformer.generation.generate import GenerateOutput, generate
from tformer.generation.logits import filter_logits
from tformer.generation.sampling import greedy_or_sample
from tformer.generation.state import DecoderState
from tformer.generation.streamer import Streamer, TextStreamer

__all__ = ["DecoderState", "GenerateOutput", "Streamer", "TextStreamer", "beam_search", "filter_logits", "generate",
           "greedy_or_sample"]
