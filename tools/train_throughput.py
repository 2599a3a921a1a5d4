"""Measure what training costs: patches/s and useful (label) pixels/s of the Keras train step
for several sub-image and batch sizes, and how long the input pipeline takes per batch.

    python tools/train_throughput.py [--data ../shared/data/T91] [--seconds 8]

A 'valid' network on a P x P sub-image yields (P - 12)^2 label pixels (9-1-5), so small
sub-images waste most of their convolutions; larger batches amortise per-step overhead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from srcnn_fast.train import TrainConfig, build_keras_model, load_dataset
from srcnn_fast.train.keras_model import import_keras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/T91")
    )
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    tf, keras = import_keras()
    data = load_dataset(TrainConfig(data=args.data, scale=3, out="", patch=64))
    rng = np.random.default_rng(0)
    print("| sub-image | batch | patches/s | label Mpix/s | input pipeline ms/batch |")
    print("|---|---|---|---|---|")
    for patch in (33, 48, 64):
        for batch in (16, 64):
            data.sampler.patch = patch
            model = build_keras_model(padding="valid")
            opt = keras.optimizers.Adam(1e-3)

            @tf.function(jit_compile=True)
            def step(x, y, model=model, opt=opt):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
                return loss

            t0 = time.perf_counter()
            batches = [data.sampler.batch(rng, batch, True) for _ in range(20)]
            pipeline_ms = (time.perf_counter() - t0) / 20 * 1e3
            float(step(*batches[0]))  # compile
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                float(step(*batches[n % 20]))
                n += 1
            rate = n * batch / (time.perf_counter() - start)
            label = (patch - 12) ** 2
            print(
                f"| {patch} | {batch} | {rate:.0f} | {rate * label / 1e6:.2f} | {pipeline_ms:.2f} |"
            )


if __name__ == "__main__":
    main()
