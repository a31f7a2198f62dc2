"""fit's callbacks: the Callback protocol (plain callables unchanged), EarlyStopping against
scripted logs and against the weights of a run without it, Checkpoint's files against the
weights at their epoch (and an exact resume from one), and verbose's in-epoch progress."""
import math
import os
import re
import sys

import numpy as np
import pytest

import bpcore
from bpcore import _progress
from bpcore.callbacks import Callback, Checkpoint, EarlyStopping

NAN = float("nan")


def _run(stopper, values, key="val_loss"):
    """Feed stopper the scripted values as epochs' logs; the epoch it stops at, or None."""
    for epoch, v in enumerate(values):
        if stopper(epoch, {"loss": 1.0, "seconds": 0.0, key: v}):
            return epoch
    return None


# ---------------------------------------------------------------------------------------------
# EarlyStopping on scripted logs

@pytest.mark.parametrize("values,kw,stop,best,best_epoch", [
    # min mode: epochs 5, 6, 7 do not beat 0.89 (epoch 4): patience 3 runs out at 7
    ([1.0, 0.9, 0.95, 0.91, 0.89, 0.9, 0.89, 0.95, 0.1], dict(patience=3), 7, 0.89, 4),
    # min_delta: 0.949 and 0.948 beat 0.95 by less than 0.01; 0.9 beats it by more; then
    # 0.899, 0.895, 0.8905 are three epochs without an improvement of more than 0.01
    ([1.0, 0.95, 0.949, 0.948, 0.9, 0.899, 0.895, 0.8905], dict(patience=3, min_delta=0.01),
     7, 0.9, 4),
    # "more than min_delta": exactly min_delta is not an improvement
    ([1.0, 0.5], dict(patience=1, min_delta=0.5), 1, 1.0, 0),
    # an equal value is no improvement; patience 1 stops at the first epoch without one
    ([3.0, 2.0, 2.0], dict(patience=1), 2, 2.0, 1),
    # NaN never improves, not even on nothing
    ([NAN, NAN, 1.0, NAN, 0.5, NAN], dict(patience=3), None, 0.5, 4),
    ([1.0, NAN, NAN, NAN, 0.0], dict(patience=3), 3, 1.0, 0),
    ([NAN, NAN], dict(patience=2), 1, None, None),
    # +inf is no improvement on the start either... but any finite value is
    ([math.inf, 5.0, 6.0], dict(patience=1), 2, 5.0, 1),
    # never stalls: runs to the end
    ([5.0, 4.0, 3.0, 2.0], dict(patience=1), None, 2.0, 3),
])
def test_early_stopping_on_scripted_losses(values, kw, stop, best, best_epoch):
    es = EarlyStopping(restore_best=False, **kw)
    assert _run(es, values) == stop
    assert es.stopped_epoch == stop
    assert es.best == best and es.best_epoch == best_epoch


def test_early_stopping_auto_mode_maximises_accuracy_and_minimises_the_rest():
    es = EarlyStopping("val_accuracy", patience=3, restore_best=False)
    assert es.mode == "max"
    assert _run(es, [0.5, 0.6, 0.6, 0.55, 0.6, 0.9], "val_accuracy") == 4
    assert (es.best, es.best_epoch) == (0.6, 1)
    # the same sequence as a loss: 0.5 at epoch 0 is the best, 0.55 no better
    es = EarlyStopping("val_accuracy", patience=3, mode="min", restore_best=False)
    assert _run(es, [0.5, 0.6, 0.6, 0.55, 0.6], "val_accuracy") == 3
    assert EarlyStopping("loss").mode == "min"
    assert EarlyStopping("acc").mode == "max"
    es = EarlyStopping("val_accuracy", patience=2, mode="max", min_delta=0.1,
                       restore_best=False)
    # 0.65 beats 0.5 by more than 0.1; 0.55 and 0.61 do not beat 0.65 (the NaN waits one)
    assert _run(es, [0.5, NAN, 0.65, 0.55, 0.61], "val_accuracy") == 4
    assert (es.best, es.best_epoch) == (0.65, 2)


def test_early_stopping_is_reset_by_each_fit(rng):
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = bpcore.MLP([4, 8, 3], seed=0)
    es = EarlyStopping("loss", patience=1, restore_best=False)
    assert _run(es, [1.0, 2.0], "loss") == 1
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
              optimizer=bpcore.SGD(model, lr=1e-9), epochs=1, callbacks=[es])
    assert es.stopped_epoch is None and es.best_epoch == 0 and es.wait == 0


# ---------------------------------------------------------------------------------------------
# EarlyStopping in a real fit

def _overfitting_problem(seed=0):
    """Few noisy rows and a wide network: the validation loss falls, then rises."""
    r = np.random.default_rng(seed)
    X = r.standard_normal((120, 6))
    y = (X[:, 0] + 0.8 * r.standard_normal(120) > 0).astype(int) + (X[:, 1] > 0.5)
    Xv = r.standard_normal((300, 6))
    yv = (Xv[:, 0] > 0).astype(int) + (Xv[:, 1] > 0.5)
    return X, y, Xv, yv


def _fit(callbacks, epochs=80, dtype="float64", **kw):
    X, y, Xv, yv = _overfitting_problem()
    model = bpcore.MLP([6, 64, 3], dtype=dtype, seed=3)
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
    history = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt,
                        epochs=epochs, batch_size=16, seed=7, validation_data=(Xv, yv),
                        callbacks=callbacks, **kw)
    return model, opt, history


def _full_run():
    weights = []

    def record(epoch, logs):
        weights.append(record.model.flat_params.copy())

    X, y, Xv, yv = _overfitting_problem()
    model = bpcore.MLP([6, 64, 3], dtype="float64", seed=3)
    record.model = model
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
    history = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=80,
                        batch_size=16, seed=7, validation_data=(Xv, yv), callbacks=[record])
    return weights, history


def _expected_stop(values, patience, min_delta, better):
    """The reference rule, written apart: the epoch where `patience` epochs have passed since
    the last one that beat every earlier record by more than min_delta."""
    record_epoch, record = None, None
    for epoch, v in enumerate(values):
        if not math.isnan(v) and (record is None or better(v, record, min_delta)):
            record_epoch, record = epoch, v
        elif epoch - (record_epoch if record_epoch is not None else -1) >= patience:
            return epoch, record_epoch
    return None, record_epoch


@pytest.mark.parametrize("monitor,patience,min_delta", [("val_loss", 3, 0.0),
                                                        ("val_loss", 5, 1e-3),
                                                        ("val_accuracy", 4, 0.0)])
def test_early_stopping_stops_a_real_fit_and_restores_the_best_weights(monitor, patience,
                                                                       min_delta):
    weights, full = _full_run()
    if monitor == "val_accuracy":
        better = lambda v, rec, d: v > rec + d  # noqa: E731
    else:
        better = lambda v, rec, d: v < rec - d  # noqa: E731
    stop, best_epoch = _expected_stop(full[monitor], patience, min_delta, better)
    assert stop is not None and stop < 60, "the problem must overfit for the test to mean much"
    assert best_epoch < stop

    es = EarlyStopping(monitor, patience=patience, min_delta=min_delta)
    model, _, history = _fit([es])
    assert es.stopped_epoch == stop and es.best_epoch == best_epoch
    assert es.best == full[monitor][best_epoch]
    assert len(history["loss"]) == stop + 1
    assert history[monitor] == full[monitor][:stop + 1]  # the same run until the stop
    # the best epoch's weights, bit for bit, and not the last epoch's
    np.testing.assert_array_equal(model.flat_params, weights[best_epoch])
    assert not np.array_equal(model.flat_params, weights[stop])
    np.testing.assert_array_equal(es.best_weights, weights[best_epoch])


def test_early_stopping_without_restore_keeps_the_last_weights_and_restores_at_the_end_too():
    weights, full = _full_run()
    es = EarlyStopping(patience=3, restore_best=False)
    model, _, history = _fit([es])
    np.testing.assert_array_equal(model.flat_params, weights[es.stopped_epoch])
    assert es.best_weights is None
    # a run that ends before patience runs out is restored to its best epoch as well
    stop, _ = _expected_stop(full["val_loss"], 3, 0.0, lambda v, r, d: v < r - d)
    epochs = stop  # one epoch short of the stop
    es = EarlyStopping(patience=3)
    model, _, history = _fit([es], epochs=epochs)
    assert es.stopped_epoch is None and len(history["loss"]) == epochs
    best = int(np.argmin(full["val_loss"][:epochs]))
    assert es.best_epoch == best
    np.testing.assert_array_equal(model.flat_params, weights[best])


def test_early_stopping_float32_and_the_restored_weights_predict_as_then(rng):
    es = EarlyStopping(patience=2)
    model, _, history = _fit([es], dtype="float32")
    assert es.stopped_epoch == len(history["loss"]) - 1
    assert model.flat_params.dtype == np.float32
    X, y, Xv, yv = _overfitting_problem()
    ev = model.evaluate(Xv, yv, bpcore.SoftmaxCrossEntropyLoss())
    assert ev["loss"] == pytest.approx(es.best, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# the protocol; plain callables

class Recorder(Callback):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_train_begin(self, model, optimizer, log_keys):
        self.calls.append(("begin", model, optimizer, log_keys))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch", epoch, sorted(logs)))
        return epoch == self.stop_at

    def on_train_end(self):
        self.calls.append(("end",))


def _small(rng, n=96):
    X, y = rng.standard_normal((n, 5)), rng.integers(0, 3, n)
    model = bpcore.MLP([5, 8, 3], seed=1)
    return model, bpcore.SGD(model, lr=0.05), X, y


def test_callback_objects_get_model_optimizer_and_each_epoch_beside_plain_callables(rng):
    model, opt, X, y = _small(rng)
    rec, plain = Recorder(), []
    history = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=3,
                        validation_data=(X, y),
                        callbacks=[rec, lambda epoch, logs: plain.append((epoch, logs["loss"]))])
    keys = ("loss", "seconds", "val_loss", "val_accuracy")
    assert rec.calls[0] == ("begin", model, opt, keys)
    assert rec.calls[1:] == [("epoch", e, sorted(keys)) for e in range(3)] + [("end",)]
    assert plain == list(enumerate(history["loss"]))


@pytest.mark.parametrize("who", ["plain", "object"])
def test_either_kind_stops_training_after_every_callback_saw_the_epoch(rng, who):
    model, opt, X, y = _small(rng)
    rec, plain = Recorder(stop_at=1 if who == "object" else None), []

    def stopper(epoch, logs):
        plain.append(epoch)
        return who == "plain" and epoch == 1

    history = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=5,
                        callbacks=[stopper, rec])
    assert len(history["loss"]) == 2 and plain == [0, 1]
    assert [c[0] for c in rec.calls] == ["begin", "epoch", "epoch", "end"]
    assert rec.calls[0][3] == ("loss", "seconds")


def test_plain_callables_alone_work_as_before(rng):
    model, opt, X, y = _small(rng)
    seen = []
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=3,
              callbacks=lambda epoch, logs: seen.append(epoch))
    assert seen == [0, 1, 2]
    seen.clear()
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=3,
              callbacks=(lambda epoch, logs: seen.append(epoch) or epoch == 0,))
    assert seen == [0]


def test_a_single_callback_object_and_epochs_zero(rng):
    model, opt, X, y = _small(rng)
    rec = Recorder()
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=0,
              callbacks=rec)
    assert [c[0] for c in rec.calls] == ["begin", "end"]
    es, before = EarlyStopping("loss"), model.flat_params.copy()
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=0,
              callbacks=es)
    assert es.best_epoch is None
    np.testing.assert_array_equal(model.flat_params, before)


def test_on_train_end_follows_on_nonfinite_stop_but_not_an_exception(rng):
    model, _, X, y = _small(rng)
    rec = Recorder()
    history = model.fit(X * 1e3, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                        optimizer=bpcore.SGD(model, lr=1e37, momentum=0.9), epochs=20,
                        on_nonfinite="stop", callbacks=[rec])
    assert "stopped" in history
    assert rec.calls[-1] == ("end",)

    model, opt, X, y = _small(rng)
    rec = Recorder()

    def fails(epoch, logs):
        raise RuntimeError("a callback's own error")

    with pytest.raises(RuntimeError, match="a callback's own error"):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=3,
                  callbacks=[rec, fails])
    assert [c[0] for c in rec.calls] == ["begin", "epoch"]


def test_early_stopping_leaves_the_weights_alone_after_an_exception(rng):
    model, opt, X, y = _small(rng)
    es = EarlyStopping("loss", patience=50)
    weights = []

    def interrupt(epoch, logs):
        weights.append(model.flat_params.copy())
        if epoch == 4:
            raise KeyboardInterrupt

    # a loss that rises after epoch 1 (lr grows), so that the best epoch is not the last
    schedule = lambda epoch: {"lr": 0.05 if epoch < 2 else 20.0}  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=10,
                  schedule=schedule, callbacks=[es, interrupt])
    np.testing.assert_array_equal(model.flat_params, weights[4])
    assert es.best_epoch < 4
    np.testing.assert_array_equal(es.best_weights, weights[es.best_epoch])


# ---------------------------------------------------------------------------------------------
# Checkpoint

def _adam_run(rng, callbacks, epochs=6, model=None, opt=None):
    X, y = np.random.default_rng(5).standard_normal((100, 5)), np.arange(100) % 3
    if model is None:
        model = bpcore.MLP([5, 8, 3], dtype="float64", seed=4)
        opt = bpcore.Adam(model, lr=0.01)
    weights = []
    cbs = list(callbacks) + [lambda epoch, logs: weights.append(model.flat_params.copy())]
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=epochs,
              batch_size=16, shuffle=False, callbacks=cbs)
    return model, opt, weights


def test_checkpoint_files_hold_the_weights_of_their_epoch_and_resume_exactly(rng, tmp_path):
    ck = Checkpoint(tmp_path / "m-{epoch:02d}.safetensors", every=2)
    model, opt, weights = _adam_run(rng, [ck])
    names = sorted(os.listdir(tmp_path))
    assert names == ["m-02.safetensors", "m-04.safetensors", "m-06.safetensors"]
    assert ck.saved == [str(tmp_path / n) for n in names]
    for n, epochs in zip(names, (2, 4, 6)):
        np.testing.assert_array_equal(bpcore.load(tmp_path / n).flat_params, weights[epochs - 1])
    # the optimizer's state came along: epochs 5 and 6 again from the file of epoch 4
    resumed = bpcore.load(tmp_path / "m-04.safetensors")
    adam = bpcore.load_optimizer(tmp_path / "m-04.safetensors", bpcore.Adam(resumed))
    _, _, again = _adam_run(rng, [], epochs=2, model=resumed, opt=adam)
    np.testing.assert_array_equal(again[-1], weights[5])


def test_checkpoint_keep_last_and_a_path_without_epoch(rng, tmp_path):
    ck = Checkpoint(str(tmp_path / "k{epoch}.safetensors"), keep_last=2)
    _, _, weights = _adam_run(rng, [ck])
    assert sorted(os.listdir(tmp_path)) == ["k5.safetensors", "k6.safetensors"]
    assert ck.saved == [str(tmp_path / "k5.safetensors"), str(tmp_path / "k6.safetensors")]
    np.testing.assert_array_equal(bpcore.load(ck.saved[0]).flat_params, weights[4])

    one = tmp_path / "one"
    one.mkdir()
    ck = Checkpoint(one / "latest.safetensors", every=4, save_optimizer=False)
    _, _, weights = _adam_run(rng, [ck])
    assert os.listdir(one) == ["latest.safetensors"]  # no temporary file left either
    np.testing.assert_array_equal(bpcore.load(one / "latest.safetensors").flat_params,
                                  weights[3])
    with pytest.raises(bpcore.CheckpointError, match="no optimizer state"):
        bpcore.load_optimizer(one / "latest.safetensors", bpcore.SGD(bpcore.MLP([5, 8, 3])))


def test_checkpoint_with_early_stopping_saves_the_stopped_epoch(rng, tmp_path):
    ck = Checkpoint(tmp_path / "e{epoch}.safetensors")
    es = EarlyStopping(patience=3)
    model, _, history = _fit([es, ck])
    last = len(history["loss"])
    assert ck.saved[-1] == str(tmp_path / f"e{last}.safetensors")
    best = bpcore.load(tmp_path / f"e{es.best_epoch + 1}.safetensors")
    np.testing.assert_array_equal(best.flat_params, model.flat_params)


@pytest.mark.parametrize("kw,error,pattern", [
    (dict(path="m-{step}.st"), ValueError, r"^path: expected a file name whose only "
                                           r"replacement field is \{epoch\}, got 'm-\{step\}.st'"),
    (dict(path="m-{}.st"), ValueError, r"^path: .*IndexError"),
    (dict(path="m-{epoch.st"), ValueError, r"^path: "),
    (dict(path=b"m.st"), TypeError, r"^path: expected a str or os.PathLike, got bytes"),
    (dict(path="m.st", keep_last=2), ValueError, r"^keep_last: expected None for a path "
                                                 r"without \{epoch\}.*got 2"),
    (dict(path="m{epoch}.st", keep_last=0), ValueError, r"^keep_last: expected an integer >= 1"),
    (dict(path="m.st", every=0), ValueError, r"^every: expected an integer >= 1, got 0"),
    (dict(path="m.st", every=1.5), TypeError, r"^every: expected an integer"),
    (dict(path="m.st", save_optimizer="yes"), TypeError, r"^save_optimizer: expected True or "
                                                         r"False, got str 'yes'"),
])
def test_checkpoint_refuses_bad_settings(kw, error, pattern):
    with pytest.raises(error, match=pattern):
        Checkpoint(**kw)


def test_checkpoint_into_a_missing_folder_fails_before_any_epoch(rng, tmp_path):
    model, opt, X, y = _small(rng)
    before, seen = model.flat_params.copy(), []
    ck = Checkpoint(tmp_path / "nowhere" / "m{epoch}.st")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=2,
                  callbacks=[lambda e, logs: seen.append(e), ck])
    assert seen == []
    np.testing.assert_array_equal(model.flat_params, before)
    with pytest.raises(RuntimeError, match="pass the Checkpoint in fit's callbacks"):
        Checkpoint(tmp_path / "m.st")(0, {"loss": 1.0})


# ---------------------------------------------------------------------------------------------
# EarlyStopping's errors

@pytest.mark.parametrize("kw,error,pattern", [
    (dict(monitor=3), TypeError, r"^monitor: expected a key of fit's logs such as 'val_loss', "
                                 r"got int 3"),
    (dict(patience=0), ValueError, r"^patience: expected an integer >= 1, got 0"),
    (dict(patience=2.0), TypeError, r"^patience: expected an integer, got float"),
    (dict(min_delta=-0.1), ValueError, r"^min_delta: "),
    (dict(min_delta=NAN), ValueError, r"^min_delta: "),
    (dict(mode="up"), ValueError, r"^mode: expected one of 'auto', 'min', 'max', got 'up'"),
    (dict(restore_best="yes"), TypeError, r"^restore_best: expected True or False"),
])
def test_early_stopping_refuses_bad_settings(kw, error, pattern):
    with pytest.raises(error, match=pattern):
        EarlyStopping(**kw)


def test_a_monitor_fit_will_not_log_is_refused_before_any_epoch(rng):
    model, opt, X, y = _small(rng)
    before = model.flat_params.copy()
    with pytest.raises(ValueError, match=r"^monitor: expected one of fit's logs 'loss', "
                                         r"'seconds', got 'val_loss' \(val_loss and "
                                         r"val_accuracy need fit's validation_data\)"):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=2,
                  callbacks=[EarlyStopping()])
    with pytest.raises(ValueError, match=r"^monitor: .*'val_loss', 'val_accuracy', got "
                                         r"'val_acc'$"):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=2,
                  validation_data=(X, y), callbacks=[EarlyStopping("val_acc")])
    np.testing.assert_array_equal(model.flat_params, before)


def test_scripted_logs_missing_the_key_none_or_not_a_number():
    with pytest.raises(ValueError, match=r"^monitor: expected one of the epoch's logs 'loss', "
                                         r"'seconds', got 'val_loss'"):
        EarlyStopping()(0, {"loss": 1.0, "seconds": 0.1})
    with pytest.raises(ValueError, match=r"^monitor: logs\['val_accuracy'\] is None"):
        EarlyStopping("val_accuracy")(0, {"val_accuracy": None})
    with pytest.raises(TypeError, match=r"^monitor: expected logs\['loss'\] to be a real "
                                        r"number, got str '1'"):
        EarlyStopping("loss")(0, {"loss": "1"})


def test_val_accuracy_of_a_loss_without_one_is_refused_at_the_first_epoch(rng):
    X = rng.standard_normal((40, 3))
    model = bpcore.MLP([3, 4, 1], dtype="float64", seed=0)
    with pytest.raises(ValueError, match=r"logs\['val_accuracy'\] is None"):
        model.fit(X, X[:, :1], loss=bpcore.MSELoss(), optimizer=bpcore.SGD(model, lr=0.01),
                  epochs=3, validation_data=(X, X[:, :1]),
                  callbacks=[EarlyStopping("val_accuracy")])


def test_lbfgs_refuses_callback_objects(rng):
    model, _, X, y = _small(rng)
    with pytest.raises(ValueError, match=r"^callbacks: expected None with optimizer=LBFGS"):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.LBFGS(),
                  callbacks=[EarlyStopping("loss")])


# ---------------------------------------------------------------------------------------------
# verbose's progress within an epoch

def _verbose_fit(verbose, epochs=2, n=2000, batch_size=32):
    r = np.random.default_rng(0)
    X, y = r.standard_normal((n, 5)).astype(np.float32), r.integers(0, 3, n)
    model = bpcore.MLP([5, 8, 3], seed=1)
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.SGD(model, lr=0.01),
              epochs=epochs, batch_size=batch_size, seed=0, verbose=verbose)
    return model.flat_params.copy()


@pytest.fixture
def every_update(monkeypatch):
    """Every epoch counts as long and no update is held back: the display shows each time
    the engine returns to Python."""
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)


@pytest.fixture
def without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` raises ImportError


def test_plain_progress_lines_come_where_the_engine_checks_for_ctrl_c(capsys, every_update,
                                                                     without_tqdm):
    _verbose_fit(1)
    lines = capsys.readouterr().out.splitlines()
    # 2000 rows in batches of 32: 63 batches; the engine comes back every 16
    for epoch in (1, 2):
        done = [int(m.group(1)) for line in lines
                for m in [re.match(rf"^epoch {epoch}/2  batch (\d+)/63  \(\d+\.\d s\)$", line)]
                if m]
        assert done == [16, 32, 48, 63]
    epoch_lines = [line for line in lines if re.match(r"^epoch \d/2  loss ", line)]
    assert len(epoch_lines) == 2 and len(lines) == 2 + 2 * 4
    assert lines.index(epoch_lines[0]) == 4  # after its epoch's progress, before the next's


def test_tqdm_progress_bar(capsys, every_update):
    pytest.importorskip("tqdm")
    _verbose_fit(1)
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/2: +\d+%\|.*\| 16/63 \[", out)
    assert re.search(r"epoch 2/2: +\d+%\|.*\| 63/63 \[", out)
    assert "batch/s" in out or "?batch/s" in out
    assert len(re.findall(r"(?m)^epoch \d/2  loss ", out.replace("\r", "\n"))) == 2


@pytest.mark.parametrize("mode", ["tqdm", "plain"])
def test_no_progress_without_verbose_nor_for_short_epochs(capsys, monkeypatch, mode):
    if mode == "plain":
        monkeypatch.setitem(sys.modules, "tqdm", None)
    else:
        pytest.importorskip("tqdm")
    quiet = _verbose_fit(0)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(_progress, "INTERVAL", 0.0)
    assert capsys.readouterr().out == ""
    _verbose_fit(0)
    assert capsys.readouterr().out == ""
    # verbose, but epochs far shorter than the interval: the epoch lines only
    monkeypatch.setattr(_progress, "INTERVAL", 60.0)
    loud = _verbose_fit(1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(re.match(r"^epoch \d/2  loss ", line) for line in lines)
    np.testing.assert_array_equal(quiet, loud)


@pytest.mark.parametrize("mode", ["tqdm", "plain"])
def test_the_display_changes_no_result(every_update, capsys, monkeypatch, mode):
    if mode == "plain":
        monkeypatch.setitem(sys.modules, "tqdm", None)
    else:
        pytest.importorskip("tqdm")
    np.testing.assert_array_equal(_verbose_fit(1, batch_size=7), _verbose_fit(0, batch_size=7))
    assert "batch" in capsys.readouterr().out


def test_a_bar_is_closed_when_the_epoch_raises(monkeypatch, every_update, capsys):
    tqdm = pytest.importorskip("tqdm")
    closed = []

    class Bar(tqdm.tqdm):
        def close(self):  # counted once: tqdm's __del__ closes again
            if not getattr(self, "counted", False):
                self.counted = True
                closed.append(self.n)
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    shown = []
    original = _progress.EpochProgress.__call__

    def update_then_interrupt(self, done, batches):
        original(self, done, batches)
        shown.append(done)
        if done >= 32:
            raise KeyboardInterrupt

    monkeypatch.setattr(_progress.EpochProgress, "__call__", update_then_interrupt)
    closed_by_fit = None
    try:
        _verbose_fit(1)
    except KeyboardInterrupt:
        # fit's frame (and its bar) is alive while the exception is: closed by fit, not by
        # tqdm's __del__
        closed_by_fit = list(closed)
    assert shown == [16, 32] and closed_by_fit == [32]


def test_progress_only_shows_the_bar_without_epoch_lines(capsys, every_update, without_tqdm):
    _verbose_fit("progress")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 4 and all(re.match(r"^epoch \d/2  batch \d+/63 ", line)
                                     for line in lines)


def test_sklearn_estimator_verbose_shows_progress_and_its_iteration_lines(
        capsys, every_update, without_tqdm):
    sk = pytest.importorskip("bpcore.sklearn")
    r = np.random.default_rng(0)
    X, y = r.standard_normal((2000, 5)), r.integers(0, 3, 2000)
    with pytest.warns(UserWarning, match="Maximum iterations"):  # ConvergenceWarning
        sk.MLPClassifier((8,), batch_size=32, max_iter=2, verbose=True, tol=0.0,
                         n_iter_no_change=5, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    iterations = [line.split(",")[0] for line in lines if line.startswith("Iteration")]
    assert iterations == ["Iteration 1", "Iteration 2"]
    assert sum(bool(re.match(r"^epoch \d/2  batch \d+/63 ", line)) for line in lines) == 8
