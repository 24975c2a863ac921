import numpy as np

from unembed.text import DecoderTokenizer, specials_of


def test_fixed_length_targets_with_eos_and_padding(minilm_tokenizer):
    tok = DecoderTokenizer(minilm_tokenizer, 8)
    ids = tok.encode(["Hello world.", "one two three four five six seven eight nine ten"])
    s = tok.specials
    assert ids.shape == (2, 8) and ids.dtype == np.int32
    assert (s.vocab_size, s.mask_id, s.pad_id, s.eos_id) == (30522, 103, 0, 102)
    assert list(ids[0][:4]) == minilm_tokenizer("Hello world.", add_special_tokens=False)["input_ids"] + [102]
    assert (ids[0][4:] == 0).all()
    assert ids[1][-1] == 102  # cut to L-1 tokens, then EOS
    assert list(tok.lengths(ids)) == [4, 8]
    assert tok.decode(ids[0]) == "hello world."
    assert tok.decode([*ids[0][:2], 103, 102, 7, 0, 0, 0]) == "hello world"  # masks dropped, stops at EOS


def test_tokenizer_without_mask_gets_one_past_the_vocab():
    class NoMask:
        sep_token_id = None
        pad_token_id = 7
        eos_token_id = 8
        mask_token_id = None

        def __len__(self):
            return 50

    s = specials_of(NoMask())
    assert (s.vocab_size, s.mask_id, s.pad_id, s.eos_id) == (51, 50, 7, 7)
