"""Save a tiny MusicGen with random weights (no download, a few seconds on a CPU): the
structure of facebook/musicgen-small (T5 text encoder, 32 kHz EnCodec with a 640-sample hop
and four codebooks, delay-pattern decoder) with a few thousand weights.  Its "music" is
noise; it is for trying ``genrestore generate`` and for the tests, which build it the same way:

    python scripts/tiny_musicgen.py /tmp/tiny-musicgen [--kind mono|stereo|melody]
    genrestore generate "calm piano" --model /tmp/tiny-musicgen --duration 2 -o /tmp/gen
"""

from __future__ import annotations

import argparse
from pathlib import Path

RATE = 32000  # every MusicGen checkpoint's EnCodec rate
WORDS = "calm piano jazz drums brushes lofi beat rain cafe with soft and".split()


def tiny_musicgen(folder: Path, *, kind: str = "mono") -> Path:
    """A MusicGen with MusicGen's structure (T5 text encoder, 32 kHz EnCodec with a 640-sample
    hop and four codebooks, delay-pattern decoder) but a few thousand random weights, saved
    with its tokenizer as ``save_pretrained`` writes a checkpoint."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    text = tf.T5Config(vocab_size=32, d_model=8, d_ff=16, num_layers=1, num_heads=2, d_kv=4)
    audio = tf.EncodecConfig(num_filters=2, hidden_size=8, codebook_size=16, codebook_dim=8,
                             num_lstm_layers=1, num_residual_layers=1, audio_channels=1,
                             upsampling_ratios=[8, 5, 4, 4], sampling_rate=RATE,
                             target_bandwidths=[2.2])
    channels = 2 if kind == "stereo" else 1
    decoder = dict(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                   ffn_dim=16, num_codebooks=4 * channels, audio_channels=channels,
                   pad_token_id=16, bos_token_id=16, max_position_embeddings=128)
    torch.manual_seed(0)
    if kind == "melody":
        config = tf.MusicgenMelodyConfig(text_encoder=text, audio_encoder=audio,
                                         decoder=tf.MusicgenMelodyDecoderConfig(**decoder),
                                         chroma_length=16)
        model = tf.MusicgenMelodyForConditionalGeneration(config)
    else:
        config = tf.MusicgenConfig(text_encoder=text, audio_encoder=audio,
                                   decoder=tf.MusicgenDecoderConfig(**decoder))
        model = tf.MusicgenForConditionalGeneration(config)
    with torch.no_grad():  # EnCodec's codebooks start at zero: every code would sound alike
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>",
                                           eos_token="</s>", unk_token="<unk>")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if kind != "melody":  # what AutoProcessor reads beside the tokenizer, as in a checkpoint
        tf.EncodecFeatureExtractor(feature_size=1, sampling_rate=RATE).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--kind", choices=("mono", "stereo", "melody"), default="mono")
    args = parser.parse_args()
    print(tiny_musicgen(args.folder, kind=args.kind))


if __name__ == "__main__":
    main()
