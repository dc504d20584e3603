"""Physical constants and unit conversions (docs/physics.md section 0).

Units used throughout massmaps: Msun (no h), physical Mpc (no h), z = 0. Only the colossus calls in
:mod:`massmaps.cosmology` use Msun/h and kpc/h internally.
"""

# Lengths and masses (cgs)
MPC_CM = 3.0856776e24
MSUN_G = 1.98841e33
MSUN_PER_MPC3_IN_G_PER_CM3 = MSUN_G / MPC_CM**3  # 6.76791e-41

# Microphysics (cgs)
M_P_G = 1.67262192e-24
K_B_ERG_PER_K = 1.380649e-16
KEV_ERG = 1.602176634e-9
KEV_K = KEV_ERG / K_B_ERG_PER_K  # 1.160452e7 K
SIGMA_T_CM2 = 6.6524587e-25
ME_C2_ERG = 8.1871058e-7
ME_C2_KEV = ME_C2_ERG / KEV_ERG  # 510.99895 keV
T_CMB_K = 2.7255  # Fixsen 2009
G_CGS = 6.67430e-8
G_MPC_KMS2_PER_MSUN = 4.30091e-9  # Mpc (km/s)^2 / Msun

# y = Y_COEFF * integral of (P_e / [keV cm^-3]) d(l / Mpc)
Y_COEFF_PER_KEV_CM3_MPC = SIGMA_T_CM2 / ME_C2_KEV * MPC_CM  # 4.017101e-3

# Primordial, fully ionised composition (X = 0.76)
X_H = 0.76
MU = 4.0 / (3.0 + 5.0 * X_H)  # 0.5882
MU_E = 2.0 / (1.0 + X_H)  # 1.1364
PE_OVER_PTH = (2.0 + 2.0 * X_H) / (3.0 + 5.0 * X_H)  # 0.5176

# Bremsstrahlung (Rybicki & Lightman 1979 Eq. 5.15b): l = 1.4e-27 g_ff T^1/2 mu_e n_e^2 erg/s/cm^3
BREMS_COEFF = 1.4e-27
GAUNT_FF_DEFAULT = 1.2

# The paper's particle masses (Msun, no h)
M_DM_PARTICLE = 1.18e10
M_GAS_PARTICLE = 2.08e9
