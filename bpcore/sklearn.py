"""scikit-learn estimators on bpcore's engine: ``MLPClassifier`` and ``MLPRegressor``.

Drop-ins for ``sklearn.neural_network.MLPClassifier``/``MLPRegressor`` (scikit-learn 1.9's
parameters, defaults and meanings), trained by bpcore's native ``fit`` (SGD, Adam) and its
full-batch gradient (L-BFGS through scipy). scikit-learn is an optional dependency
(``pip install bpcore[sklearn]``): ``import bpcore`` never imports it, this module does.

What follows scikit-learn exactly and what does not is in SKLEARN_NOTES.md at the repository
root.
"""
import contextlib
import warnings
from numbers import Integral, Real

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as _SkClassifier
    from sklearn.neural_network import MLPRegressor as _SkRegressor
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import (check_is_fitted, column_or_1d, validate_data,
                                          _check_sample_weight)
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("bpcore.sklearn needs scikit-learn: pip install 'bpcore[sklearn]'") from exc

from scipy.sparse import issparse
from scipy.special import expit, xlogy

from bpcore import io, training
from bpcore.layers import Dense, Dropout
from bpcore.losses import BCEWithLogitsLoss, MSELoss, PoissonLoss, SoftmaxCrossEntropyLoss
from bpcore.model import MLP, Sequential, activation_layer, load as load_network
from bpcore.optim import SGD, Adam, squared_norm
from bpcore.threads import blas_pinned, num_threads

__all__ = ["MLPClassifier", "MLPRegressor", "load"]

# the hidden activations: scikit-learn's four (by bpcore's names), then bpcore's own
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                **{name: name for name in ("leaky_relu", "elu", "gelu", "gelu_tanh", "silu",
                                           "softplus")}}

# beyond scikit-learn: keyword arguments whose defaults keep scikit-learn's behaviour
_EXTRA_CONSTRAINTS = {
    "activation": [StrOptions(set(_ACTIVATIONS))],
    "dtype": [None, StrOptions({"float32", "float64"})],
    "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "callbacks": [None, list],
}


class _Head:
    """The output side of one estimator's network: bpcore's loss on the logits, the output
    activation applied at prediction, and how bpcore's mean loss relates to scikit-learn's.

    ``c``: bpcore's mean-reduction gradient is c times scikit-learn's (the optimizers are set
    so that the steps are scikit-learn's); ``reported(bp_mean, const)``: scikit-learn's loss
    from bpcore's mean loss; ``sum_scale``: the factor of the native summed loss that makes
    scikit-learn's data loss times sw_sum (for L-BFGS's objective)."""

    def __init__(self, out_activation, n_outputs):
        self.out_activation = out_activation
        m = n_outputs
        if out_activation == "softmax":
            self.loss, self.c, self.per_mean, self.sum_scale = SoftmaxCrossEntropyLoss(), 1.0, 1.0, 1.0
        elif out_activation == "logistic":
            # scikit-learn's binary log loss sums over the outputs and averages over rows
            self.loss, self.c, self.per_mean, self.sum_scale = BCEWithLogitsLoss(), 1.0 / m, m, 1.0
        elif out_activation == "exp":
            # half the Poisson deviance summed over the outputs; differs from bpcore's
            # exp(z) - t z by a constant of the targets (added to the reported loss)
            self.loss, self.c, self.per_mean, self.sum_scale = PoissonLoss(), 1.0 / m, m, 1.0
        else:
            # scikit-learn reports 1/2 mean over all elements but steps on the gradient of
            # 1/2 sum / n_rows (its issue #8349): bpcore's steps are those steps
            self.loss, self.c, self.per_mean, self.sum_scale = MSELoss(), 2.0 / m, 0.5, 0.5

    def reported(self, bp_mean, const=0.0):
        return bp_mean * self.per_mean + const

    def activate(self, Z):
        if self.out_activation == "softmax":
            Z = Z - Z.max(axis=1, keepdims=True)
            np.exp(Z, out=Z)
            Z /= Z.sum(axis=1, keepdims=True)
        elif self.out_activation == "logistic":
            Z = expit(Z)
        elif self.out_activation == "exp":
            Z = np.exp(Z)
        return Z


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: initialisation, the two kinds of
    training, fit / warm start / partial_fit, prediction through the engine, pickling."""

    _parameter_constraints = dict(_SkRegressor._parameter_constraints)

    def __init__(self, **params):
        # the subclasses' signatures list the parameters (scikit-learn's get_params reads
        # them); the values are stored here, once
        for name, value in params.items():
            setattr(self, name, value)

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (as scikit-learn's MLP; see SKLEARN_NOTES.md). With
        ``warm_start`` a fitted model continues from ``coefs_``/``intercepts_`` (as they
        are: assigned values included), with a new optimizer, as scikit-learn."""
        self._validate_params()
        with self._threads():
            return self._fit(X, y, sample_weight, incremental=False)

    def _threads(self):
        """n_threads for the duration of a call (None: bpcore's setting)."""
        if self.n_threads is None:
            return contextlib.nullcontext()
        return num_threads(self.n_threads)

    def _partial_fit(self, X, y, sample_weight):
        self._validate_params()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True: each call is one "
                             "epoch over its data, with no held-out part to stop on (hold out "
                             "your own validation rows and stop calling partial_fit)")
        with self._threads():
            return self._fit(X, y, sample_weight, incremental=True)

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError("partial_fit is only available for stochastic optimizers. %s "
                                 "is not stochastic." % self.solver)
        return True

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self.hidden_layer_sizes
        if not hasattr(hidden, "__iter__"):
            hidden = [hidden]
        hidden = list(hidden)
        if np.any(np.array(hidden) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, T = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        if self.solver == "lbfgs" and self.callbacks:
            raise ValueError("callbacks: expected None with solver='lbfgs' (one scipy.optimize "
                             "call, without epochs), got %r" % (self.callbacks,))
        self._random_state = check_random_state(self.random_state)
        units = [X.shape[1]] + hidden + [self._n_outputs]
        if first_pass:
            self._initialize(units, X.dtype if self.dtype is None else np.dtype(self.dtype))
        elif [w.shape[0] for w in self.coefs_] + [self.coefs_[-1].shape[1]] != units:
            raise ValueError(
                "hidden_layer_sizes: a warm start or partial_fit continues the fitted layers "
                "%s, got layers %s (set warm_start=False to start afresh)"
                % ([w.shape for w in self.coefs_], units))
        model = self._network()
        X = _in_dtype(X, model.dtype)
        if T.dtype.kind == "f":
            T = np.ascontiguousarray(T, model.dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, model.dtype)
        head = _Head(self.out_activation_, self.n_outputs_)
        const = self._loss_constant(T, sample_weight)
        if self.solver == "lbfgs":
            self._fit_lbfgs(model, head, X, T, sample_weight, const)
        else:
            self._fit_stochastic(model, head, X, T, sample_weight, const, incremental)
        dense = _dense(model)
        self.coefs_ = [d.W.copy() for d in dense]
        self.intercepts_ = [d.b.copy() for d in dense]
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _row_weights(self, T, sample_weight, incremental):
        """The rows' training weights: sample_weight (the classifier adds class_weight)."""
        return sample_weight

    def _initialize(self, units, dtype):
        """A first fit: the counters, the output head and scikit-learn's initial weights."""
        self.n_outputs_ = self._n_outputs
        self.n_layers_ = len(units)
        self.n_iter_ = 0
        self.t_ = 0
        self.out_activation_ = self._out_activation
        # scikit-learn's Glorot-uniform draws, in its order (W then b, layer by layer): the
        # same random_state gives the same initial weights as scikit-learn's
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                               .astype(dtype, copy=False))
            self.intercepts_.append(self._random_state.uniform(-bound, bound, fan_out)
                                    .astype(dtype, copy=False))
        self._optimizer = None
        self._optimizer_state = None
        # drawn after scikit-learn's draws, and only with dropout: the rest stays its stream
        self._dropout_seed = (int(self._random_state.randint(np.iinfo(np.int32).max))
                              if self.dropout else None)
        self._dropout_draws = None
        self._model = self._model_key = None
        if self.solver in ("sgd", "adam"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _network(self):
        """The bpcore network holding coefs_ and intercepts_ as they are now (assigned values
        included: they are what the next fit, partial_fit or predict uses)."""
        sizes = [w.shape[0] for w in self.coefs_] + [self.coefs_[-1].shape[1]]
        key = (sizes, self.coefs_[0].dtype, self.activation, self.dropout)
        model = getattr(self, "_model", None)
        if model is None or self._model_key != key:
            model = self._build(*key)
            self._model, self._model_key = model, key
            optimizer = getattr(self, "_optimizer", None)
            if optimizer is not None:  # it holds the old network's parameters: keep its state
                self._optimizer_state, self._optimizer = optimizer.state_dict(), None
        for d, w, b in zip(_dense(model), self.coefs_, self.intercepts_):
            d.W[...] = w
            d.b[...] = b
        return model

    def _build(self, sizes, dtype, activation, dropout):
        """An MLP; with dropout, Dense, activation and Dropout layers (the masks' state
        continues where the last network left it: pickles and files keep it)."""
        if not dropout:
            return MLP(sizes, activation=_ACTIVATIONS[activation], dtype=dtype, seed=0)
        draws = getattr(self, "_dropout_draws", None) or [0] * (len(sizes) - 2)
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Dense(fan_in, fan_out, dtype=dtype, seed=0))
            if i < len(sizes) - 2:
                layers.append(activation_layer(_ACTIVATIONS[activation]))
                layers.append(Dropout(dropout, seed=self._dropout_seed + i, draws=draws[i]))
        return Sequential(*layers)

    def _dropout_state(self):
        """The masks drawn so far by each dropout layer of the current network."""
        model = getattr(self, "_model", None)
        if model is None:
            return getattr(self, "_dropout_draws", None)
        return [int(m.settings()["draws"]) for m in model.layers if isinstance(m, Dropout)]

    def _loss_constant(self, T, sample_weight):
        """What scikit-learn's Poisson loss adds to bpcore's (a constant of the targets)."""
        if self.out_activation_ != "exp":
            return 0.0
        per_row = (xlogy(T, T) - T).reshape(T.shape[0], -1).sum(axis=1)
        return float(np.average(per_row, weights=sample_weight))

    def _new_optimizer(self, model, head):
        """scikit-learn's SGD or Adam, in bpcore's gradient units (c times scikit-learn's):
        L2 on the weights only, alpha divided by each batch's summed weight."""
        c = head.c
        params = model.parameters()
        groups = [{"params": [p for p in params if p.name == "W"],
                   "weight_decay": c * self.alpha},
                  {"params": [p for p in params if p.name == "b"], "weight_decay": 0.0}]
        if self.solver == "sgd":
            return SGD(groups, lr=self.learning_rate_init / c, momentum=self.momentum,
                       nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                       decay_form="sklearn")
        # scaling the gradient by c scales Adam's moments: eps scales with it
        return Adam(groups, lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                    eps=self.epsilon * c, eps_form="sklearn", decay_form="sklearn")

    def _optimizer_for(self, model, head, incremental):
        """A new optimizer for fit; partial_fit's persists from call to call (restored from
        its state after unpickling)."""
        if incremental and getattr(self, "_optimizer", None) is not None:
            return self._optimizer
        optimizer = self._new_optimizer(model, head)
        saved = getattr(self, "_optimizer_state", None)
        if incremental and saved is not None:
            optimizer.load_state_dict(saved)
        self._optimizer, self._optimizer_state = optimizer, None
        return optimizer

    def _validation_split(self, X, T, sample_weight):
        """scikit-learn's early-stopping split (stratified for single-output classes), drawn
        from the same random state after the initial weights: the same rows as scikit-learn."""
        # scikit-learn stratifies single-output targets only (its binary case: a multiclass
        # target is n_classes outputs there)
        stratify = T if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = [X, T] if sample_weight is None else [X, T, sample_weight]
        parts = train_test_split(*arrays, random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X_tr, X_val, T_tr, T_val = parts[:4]
        sw_tr, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return (_in_dtype(X_tr, X.dtype), np.ascontiguousarray(T_tr), sw_tr,
                _in_dtype(X_val, X.dtype), np.ascontiguousarray(T_val), sw_val)

    def _fit_stochastic(self, model, head, X, T, sample_weight, const, incremental):
        optimizer = self._optimizer_for(model, head, incremental)
        early_stopping = self.early_stopping and not incremental
        if early_stopping:
            X, T, sample_weight, X_val, T_val, sw_val = self._validation_split(
                X, T, sample_weight)
            # each fit tracks its own best (a warm start's split is its own): SKLEARN_NOTES.md
            self.best_validation_score_ = -np.inf
            best_params = model.flat_params.copy()
        # fit's own validation pass (prepared once, native) gives the classifier's accuracy
        # when the rows are unweighted
        validation = ((X_val, T_val) if early_stopping and sw_val is None
                      and is_classifier(self) else None)
        # class weights weigh the training loss; the validation score is score()'s, by the
        # sample weights alone
        sample_weight = self._row_weights(T, sample_weight, incremental)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))
        c = head.c
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        n_batches = -(-n // batch_size)
        weight = n if sample_weight is None else float(np.sum(sample_weight))
        dense = _dense(model)

        def squares():
            return squared_norm(d.W for d in dense)

        state = {"stopped": False, "squares": squares()}
        self.n_iter_ = 0

        def after_epoch(epoch, logs):
            # scikit-learn adds 1/2 alpha |W|^2 / batch_size to each batch's loss, with W as
            # that batch found it; fit hands back the epoch only: |W|^2 is taken as the mean of
            # the epoch's first and last (the data term is exact)
            sq = squares()
            mean_sq, state["squares"] = 0.5 * (state["squares"] + sq), sq
            self.loss_ = head.reported(logs["loss"], const) + \
                n_batches * 0.5 * self.alpha * mean_sq / weight
            self.n_iter_ += 1
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            if early_stopping:
                score = (logs["val_accuracy"] if validation is not None
                         else self._validation_score(model, head, X_val, T_val, sw_val))
                self.validation_scores_.append(score)
                if self.verbose:
                    print("Validation score: %f" % score)
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_params[...] = model.flat_params
            else:
                if self.loss_ > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if self.loss_ < self.best_loss_:
                    self.best_loss_ = self.loss_
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                optimizer.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t / c
            if self._no_improvement_count > self.n_iter_no_change:
                msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                       % ("Validation score" if early_stopping else "Training loss",
                          self.tol, self.n_iter_no_change))
                if adaptive and optimizer.lr * c > 1e-6:
                    optimizer.lr = optimizer.lr / 5.0
                    if self.verbose:
                        print(msg + " Setting learning rate to %f" % (optimizer.lr * c))
                    self._no_improvement_count = 0
                else:
                    if self.verbose:
                        print(msg + (" Learning rate too small. Stopping." if adaptive
                                     else " Stopping."))
                    state["stopped"] = True
                    return True
            return False

        try:
            history = model.fit(X, T, loss=head.loss, optimizer=optimizer,
                                epochs=1 if incremental else self.max_iter,
                                batch_size=batch_size, shuffle=bool(self.shuffle),
                                validation_data=validation,
                                seed=int(self._random_state.randint(np.iinfo(np.int32).max)),
                                callbacks=[after_epoch] + list(self.callbacks or []),
                                sample_weight=sample_weight, on_nonfinite="stop",
                                verbose="progress" if self.verbose else 0)
        except KeyboardInterrupt:  # bpcore's fit leaves the model consistent: keep it
            warnings.warn("Training interrupted by user.")
            history = {}
        if "stopped" in history:
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        if not (state["stopped"] or incremental) and self.n_iter_ == self.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % self.max_iter,
                          ConvergenceWarning)
        if early_stopping:
            model.flat_params[...] = best_params

    def _fit_lbfgs(self, model, head, X, T, sample_weight, const):
        from scipy.optimize import minimize
        from sklearn.utils.optimize import _check_optimize_result

        eng = training.engine_for(model)
        sample_weight = self._row_weights(T, sample_weight, False)
        X = training.engine_input(model, X)  # sparse rows stay sparse (the engine's CSR)
        kind, target = head.loss.target_for(T, X.shape[0], model.n_outputs, model.dtype)
        eng.check_data(X, target, kind)
        w_rows = None if sample_weight is None else np.ascontiguousarray(sample_weight,
                                                                         model.dtype)
        sw_sum = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        scale = head.sum_scale / sw_sum
        pw = head.loss.native_pos_weight(model.dtype, model.n_outputs)
        weights = [slice(p.offset, p.offset + p.size) for p in model.parameters()
                   if p.name == "W"]
        alpha = self.alpha

        def objective(w):
            model.flat_params[...] = w
            value = eng.loss_and_gradient(X, target, kind, scale, pw, w_rows)
            grad = model.flat_grads.astype(np.float64)
            for part in weights:  # L2 on the weights only; einsum: no BLAS threads
                ww = w[part]
                value += 0.5 * alpha * float(np.einsum("i,i->", ww, ww)) / sw_sum
                grad[part] += alpha * ww / sw_sum
            return value, grad

        with blas_pinned():  # L-BFGS-B's own products would start scipy's BLAS pool
            result = minimize(objective, model.flat_params.astype(np.float64), jac=True,
                              method="L-BFGS-B",
                              options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                       "gtol": self.tol})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun) + const
        model.flat_params[...] = result.x

    # -- prediction ------------------------------------------------------------------------

    def _output(self, model, X):
        """The output activation of the network for X (validated, in the network's dtype)."""
        Z = training.predict(model, _in_dtype(X, model.dtype))
        return _Head(self.out_activation_, self.n_outputs_).activate(Z)

    def _forward(self, X):
        """The output activation for X, from coefs_ and intercepts_ as they are now
        (assigning them changes the predictions, as in scikit-learn)."""
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32),
                          reset=False)
        with self._threads():
            return self._output(self._network(), X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR/CSC: the first layer multiplies the rows natively
        return tags

    # -- bpcore's network and checkpoint files --------------------------------------------

    def to_bpcore(self):
        """A copy of the trained network as a ``bpcore.MLP`` (its outputs are the logits or
        log-rates: apply ``out_activation_`` for probabilities or rates)."""
        check_is_fitted(self, "coefs_")
        source = self._network()
        copy = self._build(*self._model_key)
        copy.flat_params[...] = source.flat_params
        return copy

    # fitted attributes saved as JSON (the weights travel as tensors)
    _SAVED = ("n_features_in_", "n_outputs_", "n_layers_", "out_activation_", "n_iter_", "t_",
              "loss_", "loss_curve_", "best_loss_", "validation_scores_",
              "best_validation_score_", "_no_improvement_count", "_dropout_seed")

    def save(self, path):
        """Write the fitted estimator to path in bpcore's checkpoint format (safetensors,
        written atomically): the network's weights, partial_fit's optimizer state, and the
        parameters and fitted attributes as JSON. ``bpcore.sklearn.load(path)`` reads it
        back. Parameters that are not JSON data (a RandomState, callbacks) are saved as None."""
        check_is_fitted(self, "coefs_")
        params = {k: _jsonable(v) for k, v in self.get_params(deep=False).items()}
        if isinstance(getattr(self, "class_weight", None), dict):  # keys may be any label
            params["class_weight"] = {"pairs": [[_jsonable(k), float(v)]
                                                for k, v in self.class_weight.items()]}
        fitted = {k: _jsonable(getattr(self, k)) for k in self._SAVED if hasattr(self, k)}
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        if hasattr(self, "classes_"):
            fitted["classes_"] = {"values": self.classes_.tolist(),
                                  "dtype": self.classes_.dtype.str,
                                  "type": self._label_binarizer.y_type_}
        optimizer = getattr(self, "_optimizer", None)
        model = self._network()
        if optimizer is None and getattr(self, "_optimizer_state", None) is not None:
            optimizer = self._new_optimizer(model, _Head(self.out_activation_, self.n_outputs_))
            optimizer.load_state_dict(self._optimizer_state)
        model.save(path, optimizer, extra={"estimator": type(self).__name__, "params": params,
                                           "fitted": fitted})

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_dropout_draws"] = self._dropout_state()
        state.pop("_model", None)  # the native network is rebuilt from coefs_ when needed
        optimizer = state.pop("_optimizer", None)
        if optimizer is not None:  # partial_fit's optimizer continues from its state
            state["_optimizer_state"] = optimizer.state_dict()
        return state


def _in_dtype(X, dtype):
    """X (an array, or a scipy.sparse matrix, which stays sparse) in the network's dtype."""
    if issparse(X):
        return X.astype(dtype, copy=False)
    return np.ascontiguousarray(X, dtype)


def _arguments(names):
    """An __init__'s arguments from its locals(): each estimator's signature lists its
    parameters (scikit-learn's get_params reads it) and the base class stores them."""
    return {k: v for k, v in names.items() if k not in ("self", "__class__")}


def _jsonable(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()} if all(
            isinstance(k, (str, int)) for k in value) else None
    return None  # a RandomState, callbacks: not data


def load(path):
    """The estimator saved by ``estimator.save(path)``: the same predictions, bitwise, and
    partial_fit continues from the saved optimizer state."""
    extra = io.load_extra(path)
    if not isinstance(extra, dict) or extra.get("estimator") not in ("MLPClassifier",
                                                                    "MLPRegressor"):
        raise io.CheckpointError(path, "holds no bpcore.sklearn estimator (save it with "
                                       "estimator.save(path))")
    cls = MLPClassifier if extra["estimator"] == "MLPClassifier" else MLPRegressor
    params = dict(extra["params"])
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if isinstance(params.get("class_weight"), dict):
        params["class_weight"] = {k: v for k, v in params["class_weight"]["pairs"]}
    est = cls(**params)
    fitted = dict(extra["fitted"])
    classes = fitted.pop("classes_", None)
    names = fitted.pop("feature_names_in_", None)
    for k, v in fitted.items():
        setattr(est, k, v)
    if names is not None:
        est.feature_names_in_ = np.asarray(names, dtype=object)
    if classes is not None:
        est.classes_ = np.asarray(classes["values"], dtype=np.dtype(classes["dtype"]))
        k = len(est.classes_)
        est._label_binarizer = LabelBinarizer().fit(
            np.eye(k, dtype=int) if classes["type"].startswith("multilabel") else est.classes_)
    model = load_network(path)
    est._dropout_draws = [int(m.settings()["draws"]) for m in model.layers
                          if isinstance(m, Dropout)] or None
    dense = _dense(model)
    est.coefs_ = [d.W.copy() for d in dense]
    est.intercepts_ = [d.b.copy() for d in dense]
    try:
        est._optimizer_state = io.load_optimizer_state(path)
    except io.CheckpointError:
        est._optimizer_state = None
    return est


def _dense(model):
    return [m for m in model.layers if isinstance(m, Dense)]


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` (same parameters,
    defaults, attributes and methods) trained by bpcore. Softmax output for multiclass
    targets, logistic for binary and multi-label ones."""

    _parameter_constraints = {**_SkClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS,
                              "class_weight": [None, dict, StrOptions({"balanced"})]}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, dropout=0.0, class_weight=None, callbacks=None):
        super().__init__(**_arguments(locals()))

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        if self._label_binarizer.y_type_ == "multiclass":  # labels: classes_ is sorted
            self._out_activation, self._n_outputs = "softmax", len(self.classes_)
            return X, np.searchsorted(self.classes_, y).astype(np.intp)
        Y = self._label_binarizer.transform(y)
        self._out_activation, self._n_outputs = "logistic", Y.shape[1]
        return X, np.ascontiguousarray(Y, X.dtype)

    def _row_weights(self, T, sample_weight, incremental):
        """sample_weight times each row's class_weight (a dict by label, or "balanced":
        n / (n_classes * count), scikit-learn's compute_class_weight)."""
        if self.class_weight is None:
            return sample_weight
        if self.out_activation_ == "logistic" and self.n_outputs_ > 1:
            raise ValueError("class_weight: expected None for multi-label targets (a row has "
                             "several classes), got %r" % (self.class_weight,))
        index = T if T.ndim == 1 else T.ravel().astype(np.intp)
        if isinstance(self.class_weight, str):
            if incremental:
                raise ValueError("class_weight='balanced' is not supported for partial_fit (a "
                                 "call sees part of the data): pass the dict "
                                 "compute_class_weight('balanced', classes=..., y=y_all)")
            per_class = compute_class_weight("balanced", classes=np.arange(len(self.classes_)),
                                             y=index)
        else:
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError("class_weight: expected keys among the classes %s, got %s"
                                 % (list(self.classes_), sorted(unknown, key=str)))
            per_class = np.array([float(self.class_weight.get(c, 1.0))
                                  for c in self.classes_.tolist()])
        per_row = per_class[index]
        return per_row if sample_weight is None else per_row * sample_weight

    @staticmethod
    def _validation_score(model, head, X, T, sample_weight):
        """score()'s accuracy of the network mid-training (early stopping), natively: the
        argmax's for softmax, every output on its target's side of 1/2 for the logistic
        head (scikit-learn's subset accuracy); weighted by sample_weight."""
        return training.evaluate(model, X, T, head.loss, sample_weight)["accuracy"]

    def _predict_from(self, P):
        return self._label_binarizer.inverse_transform(P.ravel() if self.n_outputs_ == 1
                                                       else P)

    def predict(self, X):
        """The predicted classes (n_samples,), or the indicator matrix of multi-label
        targets."""
        return self._predict_from(self._forward(X))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state
        (stochastic solvers only). ``classes`` (all the classes across calls) is required
        on the first call; multi-label targets need none."""
        first = not hasattr(self, "classes_")
        if classes is None and first and not type_of_target(y).startswith("multilabel"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(self.classes_, classes):
                raise ValueError("`classes=%r` is not the same as on last call to "
                                 "partial_fit, was: %r" % (classes, self.classes_))
        if first:
            self._label_binarizer = LabelBinarizer().fit(
                y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._partial_fit(X, y, sample_weight)

    def predict_proba(self, X):
        """Probability of each class (n_samples, n_classes), in the order of classes_."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` (same parameters,
    defaults, attributes and methods) trained by bpcore. ``loss="squared_error"`` (identity
    output) or ``"poisson"`` (exp output, trained on log-rates)."""

    _parameter_constraints = {**_SkRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, dropout=0.0, callbacks=None):
        super().__init__(**_arguments(locals()))

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        self._out_activation = "exp" if self.loss == "poisson" else "identity"
        self._n_outputs = Y.shape[1]
        return X, np.ascontiguousarray(Y, X.dtype)

    def _validation_score(self, model, head, X, T, sample_weight):
        """score()'s R^2 of the network mid-training (early stopping; NaN if a prediction is
        not finite, as scikit-learn)."""
        P = self._output(model, X)
        if not np.isfinite(P).all():
            return np.nan
        return r2_score(T, P, sample_weight=sample_weight)

    @staticmethod
    def _predict_from(P):
        return P.ravel() if P.shape[1] == 1 else P


    def predict(self, X):
        """The predicted values (n_samples,), or (n_samples, n_outputs) for several."""
        return self._predict_from(self._forward(X))

    # scikit-learn 1.9's regressor offers partial_fit with solver="lbfgs" too (its
    # available_if tests the bound method, always true): here, as for its classifier, not
    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state
        (stochastic solvers only)."""
        return self._partial_fit(X, y, sample_weight)
