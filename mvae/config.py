"""Configuration dataclasses: every number the model, the audio front end and training use.

A config read from a file (a checkpoint's metadata, train.py's --config) is checked by `validate()` before
anything is built from it: types, and ranges that keep a model and its audio front end a size a CPU
can hold. Each field carries its own range, choices and help (`setting`, `option`, in mvae.fields, with the
checks that read them); a number that has no range gets DEFAULT_INT_RANGE or DEFAULT_FLOAT_RANGE by the type
of its default, so a new field is bounded without further edits.

A field made with `option(default, help)` is a command-line flag of train.py (and is named by the
benchmarks' rebuilt commands); its help text lives here, next to its default, and nowhere else. train.py's
own defaults are SHIPPED_RECIPE applied on top of these: the dataclass defaults stay what checkpoints
written before the recipe existed, and the tests, were made with.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from . import registry
from .fields import Checked, build, option, setting

LABEL = "label"
N_CLASSES = 10
IMAGE_SIZE = 28
IMAGE_FIT = 20  # MNIST convention: the long side of the ink is fitted to 20 px inside 28x28
ARCHITECTURES = ("mlp", "conv", "conv-mlp")  # encoder family, then decoder family when they differ
SPEECH_LIKELIHOODS = ("laplace", "gaussian")
LR_SCHEDULES = ("constant", "cosine")
CROSS_STYLES = ("prior", "own")
DECODER_FAMILIES = ("mlp", "conv", "conv1d")  # conv1d: transposed convs along time, the rows as channels


OPTIONAL_DECODER_FAMILIES = ("",) + DECODER_FAMILIES  # "": the architecture's own


# Griffin-Lim's work for one decoded log-mel (`AudioConfig.vocoder_cost`), in FFT operations. The shipped
# settings cost 1.95e7 (about 20 ms on one CPU core, near 1 ns an operation); the bound leaves ten times that,
# so that no config a checkpoint carries makes a `.speech` cost more than about 0.2 s per log-mel. At the old
# limits (n_fft 8192, 1024 frames, 512 iterations) it was 1.1e11: about 5 minutes.
MAX_VOCODER_COST = 2 * 10**8


@dataclass
class AudioConfig(Checked):
    sample_rate: int = setting(8000, range=(1_000, 96_000))
    n_fft: int = setting(512, range=(16, 8_192))
    hop_length: int = setting(128, range=(1, 8_192))
    n_mels: int = setting(64, range=(1, 256))
    n_frames: int = setting(64, range=(1, 1_024))
    f_min: float = setting(20.0, range=(0.0, 48_000.0))
    f_max: float = setting(4000.0, range=(1.0, 48_000.0))
    log_floor: float = setting(1e-5, range=(1e-12, 1.0))
    # Voice activity: frames quieter than the loudest frame by more than trim_top_db are silence.
    trim_top_db: float = setting(35.0, range=(0.0, 200.0))
    trim_frame: int = setting(256, range=(4, 65_536))
    # Voice must stand this far above the quietest tenth of the frames.
    trim_floor_margin_db: float = setting(6.0, range=(0.0, 200.0))
    trim_min_range_db: float = setting(10.0, range=(0.0, 200.0))
    silence_peak: float = setting(1e-3, range=(0.0, 1.0))  # a recording that never peaks above this is silent
    min_voiced_s: float = setting(0.05, range=(0.0, 60.0))
    min_input_s: float = setting(0.05, range=(0.0, 60.0))
    max_input_s: float = setting(60.0, range=(0.01, 600.0))
    max_input_rate: int = setting(384_000, range=(1_000, 384_000))
    target_peak: float = setting(0.9, range=(0.001, 1.0))
    griffin_lim_iters: int = setting(32, range=(1, 512))
    # Training augmentation, scaled by TrainConfig.aug_strength.
    aug_speed: float = setting(0.12, range=(0.0, 0.9))  # relative speed change, uniform in [-aug_speed, +aug_speed]
    aug_pitch_semitones: float = setting(2.0, range=(0.0, 24.0))
    aug_snr_db: tuple[float, float] = setting((12.0, 40.0), range=(-50.0, 200.0))
    aug_gain_db: float = setting(10.0, range=(0.0, 60.0))
    aug_shift_frames: int = setting(8, range=(0, 1_024))

    @property
    def num_samples(self) -> int:
        return (self.n_frames - 1) * self.hop_length

    @property
    def vocoder_cost(self) -> float:
        """Griffin-Lim's FFT operations for one log-mel: each iteration, and the last resynthesis, take an
        inverse and a forward STFT of n_frames frames of n_fft points (n_fft log2 n_fft each)."""
        return (self.griffin_lim_iters + 1) * 2 * self.n_frames * self.n_fft * math.log2(self.n_fft)

    def _problems(self, prefix: str) -> list[str]:
        problems = super()._problems(prefix)
        if problems:
            return problems
        # Frames must overlap by half or more: the inverse STFT divides by the overlap-added squared Hann
        # window, which is zero where frames only touch (hop = n_fft gives NaN) and tiny where they barely overlap.
        if self.hop_length > self.n_fft // 2:
            problems.append(f"{prefix}hop_length ({self.hop_length}) must not exceed half of {prefix}n_fft "
                            f"({self.n_fft} // 2 = {self.n_fft // 2}), so that the frames overlap")
        if self.vocoder_cost > MAX_VOCODER_COST:
            problems.append(f"{prefix}griffin_lim_iters, n_frames and n_fft ({self.griffin_lim_iters}, "
                            f"{self.n_frames}, {self.n_fft}) make Griffin-Lim cost {self.vocoder_cost:.3g} FFT "
                            f"operations per log-mel; at most {MAX_VOCODER_COST:.3g} are allowed")
        if self.n_mels > self.n_fft // 2 + 1:
            problems.append(f"{prefix}n_mels ({self.n_mels}) must not exceed n_fft // 2 + 1 ({self.n_fft // 2 + 1})")
        if not self.f_min < self.f_max <= self.sample_rate / 2:
            problems.append(f"{prefix}f_min < f_max <= sample_rate / 2 must hold; got f_min={self.f_min}, "
                            f"f_max={self.f_max}, sample_rate={self.sample_rate}")
        if self.min_input_s > self.max_input_s:
            problems.append(f"{prefix}min_input_s ({self.min_input_s}) must not exceed "
                            f"max_input_s ({self.max_input_s})")
        if self.aug_snr_db[0] > self.aug_snr_db[1]:
            problems.append(f"{prefix}aug_snr_db must be (low, high); got {list(self.aug_snr_db)}")
        return problems


@dataclass
class ModelConfig(Checked):
    # "mlp" (the seed's fully connected nets), "conv" (conv encoders, transposed-conv decoders) or
    # "conv-mlp" (conv encoders, fully connected decoders: the decoders run on all 8 subsets, so they
    # dominate the cost on a CPU)
    architecture: str = option(
        "mlp", "encoder/decoder family: mlp (the seed's), conv, or conv-mlp (conv encoders, MLP decoders)",
        choices=ARCHITECTURES)
    latent_dim: int = option(64, "size of the shared latent z, fused by the product of experts", range=(1, 1_024))
    # A private style latent per input modality (as in DMVAE and MMVAE+): the shared latent holds what the
    # modalities have in common (which digit), each style latent how this one looks or sounds. A missing
    # modality's style is drawn from its prior, so cross-modal samples vary instead of averaging.
    # 0 gives the plain PoE-MVAE of Wu & Goodman.
    style_dim: int = option(0, "size of each modality's private style latent (0: the plain PoE-MVAE)", range=(0, 1_024))
    # Scale of the prior a missing modality's style is drawn from during training (MMVAE+'s auxiliary
    # prior): wider than N(0, I), so the decoder learns to take the digit from the shared latent.
    cross_style_scale: float = option(
        1.0, "scale of the prior a missing modality's style is drawn from in training", range=(0.0, 100.0))
    # Where a cross-modal term of the objective takes the style of the modality it reconstructs: "prior"
    # draws it (MMVAE+, scaled by cross_style_scale); "own" uses the style the target's own encoder infers
    # (DMVAE), so the term asks "this digit, drawn in this hand, from the other modality's content" and
    # trains the decoder to take the digit from the shared latent without averaging the hands away.
    cross_style: str = option(
        "prior", "style a cross-modal term decodes with: prior (MMVAE+) or own (the target's own, DMVAE)",
        choices=CROSS_STYLES)
    # Weight of the style-swap term: each modality's decoder draws digits of random other classes (shared
    # latents from the label expert) in the batch's own styles and in styles from the prior, and the
    # modality's own encoder, frozen for this term, must read the drawn class back. It asks of training
    # what cross-modal generation asks of the model: the digit from the shared latent, whatever the style.
    swap_weight: float = option(
        0.0, "weight of the style-swap term: the digit must read back whatever the style (0: none)", range=(0.0, 1e6))
    # Multiplies beta for the shared latent. A nat spent there costs more than one spent in a style, so
    # the shared latent keeps to the digit and everything else about an item moves into its style.
    shared_kl_weight: float = option(
        1.0, "multiplies beta for the shared latent, pushing all but the digit into the styles", range=(0.0, 1e6))
    hidden: int = option(512, "width of the hidden layers", range=(1, 4_096))
    conv_channels: int = option(32, "channels of the first conv layer (conv architectures)", range=(1, 256))
    # The 64x64 log-mel would make these convs costly, so only the digit encoders have them.
    image_conv_extra: int = option(
        0, "3x3 conv layers after each stride-2 conv of the digit encoders (conv architectures)", range=(0, 8))
    image_conv_batchnorm: bool = option(
        False, "batch norm after every conv of the digit encoders (conv architectures)")
    # "conv" draws strokes with transposed convs at a quarter of the cost of conv decoders for the 64x64
    # log-mel as well.
    image_decoder: str = option(
        "", "the digits' decoder family when it differs from the architecture's: mlp, conv or conv1d",
        choices=OPTIONAL_DECODER_FAMILIES)
    # A transposed-conv decoder draws the log-mel's harmonics, formant tracks and onsets as local patterns in
    # time and frequency; the MLP from a few dozen numbers to 4,096 bins predicts their median, a smear.
    # conv1d draws along time only, each frame's 64 mel bins as the channels of its last layer: onsets and
    # formant movement stay local, at a tenth of the 2-D decoder's cost.
    speech_decoder: str = option(
        "", "the speech decoder family when it differs from the architecture's: mlp, conv or conv1d",
        choices=OPTIONAL_DECODER_FAMILIES)
    speech_conv_channels: int = option(
        0, "channels of the speech conv decoder's last hidden layer, doubling towards the latent "
           "(0: conv_channels)", range=(0, 256))
    # The speech decoder draws 4,096 numbers where a digit's draws 784, through the same hidden width unless
    # this widens it alone: the encoders and the digits' decoders keep their size, and the file grows by the
    # speech decoder's share only.
    speech_hidden: int = option(0, "width of the speech decoder's hidden layers (0: hidden)", range=(0, 4_096))
    # The reconstructions are the objective's cost: every subset's posterior is cheap (a precision sum), but
    # each decoder would run once per subset. With k > 0 each example's inputs are decoded from the joint
    # posterior and k - 1 other subsets drawn at random (MoPoE and MMVAE+ subsample the same way); those
    # terms are scaled so that the loss stays an unbiased estimate of the sum over every subset.
    decoded_subsets: int = option(
        0, "subsets each training example is decoded from: the joint posterior and k - 1 drawn at random "
           "(0: every subset)", range=(0, 64))
    n_classes: int = setting(N_CLASSES, range=(2, 1_000))
    modalities: tuple[str, ...] = setting(factory=registry.names)
    # Every reconstruction term is rescaled to the size of one 28x28 image so that the 4096-bin
    # log-mel does not drown the images; these weights act on top of that balance.
    reference_dim: int = setting(IMAGE_SIZE * IMAGE_SIZE, range=(1, 1_000_000))
    recon_weights: dict[str, float] = option(
        None, "weight of each modality's reconstruction (each already scaled to one 28x28 image), as NAME=WEIGHT "
        "pairs",
        factory=lambda: dict.fromkeys(registry.names(), 1.0), range=(0.0, 1e6))
    # Multiplies beta for a modality's style. A style that costs more nats keeps less of its item: a voice's
    # style that holds only how it sounds, not when each formant moves, leaves the decoder to draw the word
    # from the shared latent, so a real speaker's style keeps the digit.
    style_kl_weights: dict[str, float] = option(
        None, "multiplies beta for each modality's style latent, as NAME=WEIGHT pairs",
        factory=lambda: dict.fromkeys(registry.names(), 1.0), range=(0.0, 1e6))
    label_weight: float = option(50.0, "weight of the label cross-entropy (the MVAE paper's lambda)", range=(0.0, 1e6))
    speech_likelihood: str = option("laplace", "likelihood of the log-mel: laplace or gaussian",
                                    choices=SPEECH_LIKELIHOODS)
    speech_scale: float = option(1.0, "scale of the log-mel likelihood, in per-bin standard deviations",
                                 range=(1e-06, 1e6))
    # A decoder fitted with a likelihood predicts the median of what a voice could be: each mel bin's movement
    # over time (onsets, formant transitions) flatter than speech's, the over-smoothing that statistical speech
    # synthesis corrects with a postfilter. A decoded log-mel's deviation from each bin's mean over time is
    # scaled by this before it becomes data (and is vocoded); 1 leaves the decoder's output as it is. Not a
    # training setting: mvae.evaluation.contrast chooses it for a trained model on its training split.
    log_mel_contrast: float = setting(1.0, range=(0.25, 4.0))
    audio: AudioConfig = field(default_factory=AudioConfig)

    def _problems(self, prefix: str) -> list[str]:
        problems = super()._problems(prefix)
        if problems:
            return problems
        known = registry.names()
        if not self.modalities or len(set(self.modalities)) != len(self.modalities) \
                or not set(self.modalities) <= set(known):
            problems.append(f"{prefix}modalities must be distinct names from {list(known)}; "
                            f"got {list(self.modalities)}")
        for name in ("recon_weights", "style_kl_weights"):
            if not set(getattr(self, name)) <= set(known):
                problems.append(f"{prefix}{name} may only name {list(known)}; "
                                f"got {sorted(getattr(self, name))}")
        return problems

    @property
    def style_names(self) -> tuple[str, ...]:
        """The modalities with a private style latent (none in the plain PoE-MVAE)."""
        return tuple(self.modalities) if self.style_dim else ()

    def latent_layout(self) -> dict[str, slice]:
        """Where each part sits in the full latent: the shared latent first, then each modality's style."""
        layout = {"shared": slice(0, self.latent_dim)}
        for i, name in enumerate(self.style_names):
            start = self.latent_dim + i * self.style_dim
            layout[name] = slice(start, start + self.style_dim)
        return layout

    @property
    def full_latent_dim(self) -> int:
        return self.latent_dim + self.style_dim * len(self.style_names)


@dataclass
class TrainConfig(Checked):
    epochs: int = option(10, "passes over pairs_per_epoch freshly paired examples", range=(1, 100_000))
    batch_size: int = option(128, "pairs per optimiser step", range=(1, 65_536))
    lr: float = option(1e-3, "Adam learning rate (at the start of the schedule)", range=(0.0, 10.0))
    lr_schedule: str = option("constant", "cosine (decay to lr * lr_floor by the last step) or constant",
                              choices=LR_SCHEDULES)
    lr_floor: float = option(0.05, "final fraction of the learning rate under the cosine schedule", range=(0.0, 1.0))
    weight_decay: float = option(0.0, "Adam weight decay", range=(0.0, 10.0))
    beta: float = option(1.0, "weight of the KL term once warmed up", range=(0.0, 1e6))
    beta_warmup_epochs: float = option(2.0, "epochs over which beta rises linearly from 0", range=(0.0, 1e5))
    pairs_per_epoch: int = option(60_000, "label-paired examples drawn afresh each epoch", range=(1, 100_000_000))
    seed: int = option(0, "seed for pairing, augmentation and initialisation", range=(0, 2**63 - 1))
    speech_aug_copies: int = option(
        4, "augmented copies (speed, pitch, noise, gain) of each training recording, at most: a run that draws "
           "fewer speech items makes fewer (mvae.data.banks.useful_copies); 0 skips them", range=(0, 64))
    aug_strength: float = option(1.0, "scale of the speech augmentation ranges (0 turns it off)", range=(0.0, 10.0))
    # An augmented copy's speed, pitch, noise and shift are not in any other modality, so a decoder asked to
    # reconstruct them from a digit can only predict their average: a smear. Reconstructing the recording
    # the copy was made from asks the encoders to see through the augmentation, and the decoders for speech.
    clean_targets: bool = option(
        False, "reconstruct the unaugmented recording an augmented copy of it was made from")
    # The clean recording still differs from its copy in speed, pitch and placement, which the copy's encoder
    # hears but cannot undo: a speaker's true speed and pitch are not in the copy, so the decoder of a
    # recording in its own voice averages over every speed and pitch it could have had. The copy without
    # its noise and level change keeps what can be heard and drops what is not voice.
    warped_targets: bool = option(
        False, "with clean targets, reconstruct an augmented copy without its noise and level change instead: "
               "its speed, pitch and placement stay")
    # The decoder's log-mels are postfiltered (ModelConfig.log_mel_contrast) before they are heard; how much is
    # measured, not guessed: every candidate is read by the judges on training pairs (mvae.evaluation.contrast).
    tune_contrast: bool = option(
        False, "after training, choose the log-mel contrast by the judges' readings on the training split")
    image_aug: float = option(
        1.0, "scale of the drawing augmentation: rotation, scale, shift, stroke width (0 turns it off)",
        range=(0.0, 10.0))
    eval_every: int = option(1, "epochs between test evaluations during training (the last epoch is always "
                                "evaluated)", range=(1, 100_000))
    eval_pairs: int = option(0, "test pairs per evaluation (0: all of them)", range=(0, 100_000_000))
    eval_batch_size: int = option(512, "batch size for evaluation", range=(1, 65_536))
    grad_clip: float = option(5.0, "gradient norm clip (0: none)", range=(0.0, 1e6))
    num_threads: int = option(0, "CPU threads for torch (0: torch's default)", range=(0, 1_024))

    def _problems(self, prefix: str) -> list[str]:
        problems = super()._problems(prefix)
        if not problems and self.warped_targets and not self.clean_targets:
            problems.append(f"{prefix}warped_targets changes what clean targets are, so it needs clean_targets "
                            "true")
        return problems


# The recipe of the shipped checkpoint, as train.py's defaults: `python train.py --data-dir data --out
# runs/mine` trains the shipped model. Shaped like train.py's --config file. The dataclass defaults above
# stay as they were: a checkpoint written before a field existed loads with that field's default.
SHIPPED_RECIPE: dict[str, dict[str, Any]] = {
    "model": {"architecture": "conv-mlp", "conv_channels": 16, "image_conv_extra": 1, "image_conv_batchnorm": True,
              "hidden": 256, "latent_dim": 16, "style_dim": 16, "cross_style": "own", "swap_weight": 200.0,
              "image_decoder": "conv", "decoded_subsets": 2,
              "style_kl_weights": {"farsi": 1.0, "kannada": 1.0, "speech": 0.35}},
    "train": {"epochs": 14, "beta": 0.5, "lr_schedule": "cosine", "num_threads": 2, "eval_every": 4,
              "clean_targets": True, "tune_contrast": True},
}
SHIPPED_SAVE_DTYPE = "float16"  # halves the size of model.safetensors


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def model_config_from_dict(data: dict) -> ModelConfig:
    """A ModelConfig from parsed JSON; ValueError, naming the field, when a value is of the wrong type or size."""
    return build(ModelConfig, data).validate()


def train_config_from_dict(data: dict) -> TrainConfig:
    return build(TrainConfig, data).validate()


def shipped_configs() -> tuple[ModelConfig, TrainConfig]:
    """The configs SHIPPED_RECIPE gives: train.py's defaults."""
    return model_config_from_dict(SHIPPED_RECIPE["model"]), train_config_from_dict(SHIPPED_RECIPE["train"])


class ConfiguredLatent:
    """What a model's config says of its modalities and its latent, for the torch and the lean model alike:
    a subclass sets `self.cfg`."""

    cfg: ModelConfig

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.cfg.modalities)

    @property
    def style_names(self) -> tuple[str, ...]:
        return self.cfg.style_names

    def latent_layout(self) -> dict[str, slice]:
        return self.cfg.latent_layout()

    @property
    def full_latent_dim(self) -> int:
        return self.cfg.full_latent_dim
