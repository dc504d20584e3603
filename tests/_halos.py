"""A catalogue row for one halo, shared by the mock and observables tests."""

from massmaps import cosmology as cm


def halo_row(M, *, s=1.0, q=1.0, seed=1, quat=(0.0, 0.0, 0.0, 1.0), c=None, halo_id=7, **extra):
    row = dict(
        halo_id=halo_id,
        M200m_Msun=M,
        R200m_Mpc=float(cm.R200m(M)),
        c200m=float(cm.concentration_200m(M)) if c is None else c,
        axis_ratio_s=s,
        axis_ratio_q=q,
        rot_qx=quat[0],
        rot_qy=quat[1],
        rot_qz=quat[2],
        rot_qw=quat[3],
        seed=seed,
    )
    row.update(extra)
    return row
