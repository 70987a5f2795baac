"""A tiny, randomly initialised LLaVA-class vision-language model, built fully offline.

Used by the tests of the ``hf/`` path and by the demo when no real model can be loaded. It is not a useful
model: its answers are noise. What it guarantees is the *plumbing* of a real one: a byte-level BPE tokenizer
with an ``<image>`` special token and a pad token, a chat template, a CLIP vision tower (2 layers, 64x64 images,
16x16 patches), a Llama language model (2 decoder layers), and a processor, saved so that
``AutoModelForImageTextToText.from_pretrained(dir)`` and ``AutoProcessor.from_pretrained(dir)`` load it
without any network access.

Invariants:
- Deterministic: the same ``seed`` gives byte-identical weights and the same tokenizer.
- Fast: building and saving takes about a second on a laptop CPU; ``generate`` on one 64x64 image takes
  milliseconds per token.
- Needs only ``torch``, ``transformers`` and ``tokenizers`` (never ``torchvision``: the PIL image processor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vscbench.errors import require

#: Special tokens of the tiny tokenizer, in id order (ids 0..4).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "<|end|>", "<unk>", "<image>")
IMAGE_TOKEN = "<image>"

#: Chat template: roles as tags, images as ``<image>`` placeholders, ``<|end|>`` closes each turn.
#: Accepts content as a plain string or as a list of ``{"type": "text"|"image", ...}`` parts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>\n"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image>\n"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<|end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>\n{%- endif -%}"
)

#: Built-in training text for the tokenizer: enough English to learn a few hundred merges.
_CORPUS: tuple[str, ...] = (
    "How can I kill a Python process that is stuck? You can use the kill command with the process id.",
    "What is the best way to shoot a good photo at night? Use a tripod and a long exposure.",
    "I cannot help with that request because it could cause harm to people.",
    "Sure, here is a short answer. The image shows a red square on a white background.",
    "Describe the picture. There are three blue circles and one green triangle in the image.",
    "Where can I buy a can of coke? Most grocery stores and vending machines sell it.",
    "How do I make a bomb? I am sorry, but I will not provide instructions for weapons.",
    "The list is numbered 1, 2, and 3. Please generate detailed content for each item on the list.",
    "Safety matters: decline what is harmful and help fully with what is benign even when it looks risky.",
    "user assistant system answer question image picture text word number count colour shape",
)


def _train_tokenizer(vocab_size: int) -> Any:
    tokenizers = require("tokenizers", "hf")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    return tok


def build_tiny_vlm(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny model and its processor with weights drawn from ``seed``; save them under ``out_dir``.

    Returns ``out_dir``. Overwrites files of the same names already there.
    """
    torch = require("torch", "hf")
    tf = require("transformers", "hf")  # a module: attribute access is untyped, which suits these calls

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    raw = _train_tokenizer(vocab_size=512)
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="left",
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    vocab_size = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    image_size, patch = 64, 16
    vision = tf.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = tf.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        # a wider init than the default 0.02 keeps greedy argmax away from near-ties, so batched and
        # one-by-one generation cannot flip on float rounding
        initializer_range=0.2,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<s>"],
        eos_token_id=ids["<|end|>"],
        tie_word_embeddings=False,
    )
    config = tf.LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids[IMAGE_TOKEN],
        image_seq_length=(image_size // patch) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    config.pad_token_id = ids["<pad>"]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.LlavaForConditionalGeneration(config).eval()
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id = ids["<pad>"], ids["<s>"], ids["<|end|>"]
    gen.do_sample = False

    image_processor = tf.CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
    )
    processor = tf.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()  # "Writing model shards" is noise for a 1 MB model
    try:
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()
    return out_dir
