"""The one VLM wrapper (DESIGN 3.1): load, generate, score, tokens, LoRA, save."""

from vlmrl.model.encoding import ConversationError, load_image
from vlmrl.model.families import FAMILIES, Family
from vlmrl.model.types import Conversation, Generation, Message, SamplingParams, TokenScores
from vlmrl.model.vlm import VLM, LoraSettings, ModelLoadError

__all__ = [
    "FAMILIES",
    "VLM",
    "Conversation",
    "ConversationError",
    "Family",
    "Generation",
    "LoraSettings",
    "Message",
    "ModelLoadError",
    "SamplingParams",
    "TokenScores",
    "load_image",
]
