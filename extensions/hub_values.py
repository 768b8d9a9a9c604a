"""``python -m extensions.hub_values INPUT.npy|.npz --k 5 --output m.npy``: see :mod:`extensions.hub_values_cli`.

Run this module, do not import it: importing ``extensions.hub_values`` would replace the package's
:func:`extensions.hub_values` function (the hub values of a pool) with this module.
"""

if __name__ == "__main__":
    from extensions.hub_values_cli import main

    main(prog_name="python -m extensions.hub_values")  # pylint: disable=no-value-for-parameter
