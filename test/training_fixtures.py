"""Small training problems: a tiny design space, a reversal task and a tiny corpus.

The reversal task (the target is the source reversed) is real translation in
miniature: a tiny SuperTransformer learns it in seconds, so training tests
check behaviour (learning, resuming, stopping) rather than just running code.
"""

from pathlib import Path
import random

import torch
import yaml

from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.training import TrainConfig, Trainer

VOCAB, PAD, BOS, EOS = 24, 0, 2, 3

SPACE = DesignSpace(encoder_embed_dim=(32, 48), decoder_embed_dim=(32, 48), ffn_dim=(32, 64),
                    heads=(1, 2), encoder_layers=(2,), decoder_layers=(1, 2), ende=(1, 2),
                    head_dim=16, max_positions=32)


def reversal_pairs(count, seed):
    """``count`` (source, reversed source) pairs of 2 to 8 tokens."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        src = [rng.randrange(4, VOCAB) for _ in range(rng.randint(2, 8))]
        pairs.append((src, src[::-1]))
    return pairs


def make_trainer(tmp_path, mode='sandwich', train_pairs=None, rank=0, world_size=1,
                 **overrides):
    """A Trainer on the reversal task; ``overrides`` are TrainConfig fields."""
    torch.manual_seed(0)
    model = SuperTransformer(SPACE, VOCAB, PAD, BOS, EOS, dropout=overrides.pop('dropout', 0.1))
    options = dict(run_dir=tmp_path / 'run', mode=mode, lr=3e-3, warmup=10, max_tokens=64,
                   epochs=1, log_every=1, valid_sentences=8, seed=3, progress_bar=False)
    options.update(overrides)
    valid = reversal_pairs(16, seed=99)
    pairs = reversal_pairs(200, seed=1) if train_pairs is None else train_pairs
    return Trainer(TrainConfig(dropout=model.dropout, **options), model, pairs, valid,
                   valid_references=[' '.join(map(str, t)) for _, t in valid],
                   detokenize=lambda ids: ' '.join(map(str, ids)),
                   rank=rank, world_size=world_size)


ENGLISH = ['Open the file', 'Save the document', 'Close the window', 'Print the page',
           'Copy the text', 'Delete the folder', 'Rename the file', 'Show the menu']
GERMAN = ['Datei öffnen', 'Dokument speichern', 'Fenster schließen', 'Seite drucken',
          'Text kopieren', 'Ordner löschen', 'Datei umbenennen', 'Menü anzeigen']


def write_tiny_corpus(folder, repeats=4):
    """``train``/``valid`` splits of real sentences in ``folder``, and a tiny space YAML.

    Returns ``(corpus_dir, space_path)``; the space is ``translation_fixtures``'s,
    sized for the shipped SentencePiece model's vocabulary.
    """
    from translation_fixtures import tiny_space

    corpus = Path(folder) / 'corpus'
    corpus.mkdir(parents=True)
    for split, count in (('train', repeats), ('valid', 1)):
        (corpus / f'{split}.en').write_text('\n'.join(ENGLISH * count) + '\n')
        (corpus / f'{split}.de').write_text('\n'.join(GERMAN * count) + '\n')
    space_path = Path(folder) / 'space.yaml'
    space_path.write_text(yaml.safe_dump(tiny_space().to_dict()))
    return corpus, space_path
