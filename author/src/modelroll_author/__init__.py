"""``modelroll``, the model author's command: evaluate a scikit-learn model on labelled data,
package it with its reference statistics, and push the package to a store.

It runs on the author's machine or in CI, never in an image: it needs pandas (the ``author``
extra). It reuses the inference server's loader and store code, so a model it packages is
loaded by exactly the code that will serve it.
"""
