"""Physical parameters of a simulated table + patient, and the plant family they are drawn from.

The built-in simulator is one plant (`nominal_plant`). A controller tuned on one plant proves
nothing about a table it has never met, so `draw_plant` draws every physical parameter from
ranges wider than any real table (the ranges and their sources are in docs/control.md,
"Plant family"). Draws are seeded: the same (region, weight, seed) always gives the same
plant, so a failure in a campaign is reproduced by its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from spinedecomp.core.units import Region, kg_to_n, limits_for
from spinedecomp.device import physics as ph
from spinedecomp.device.table import TableDynamics


@dataclass(frozen=True)
class PlantParams:
    """Every physical parameter of the simulated table, cable, harness and patient."""

    region: Region
    body_weight_kg: float
    cable_stiffness_n_mm: float  # cable + harness, in series with the spine
    slack_mm: float
    friction_n: float  # table friction the lower body (or the head piece) must overcome
    spine_stiffness_n_mm: float  # instant elastic part of the spine
    creep_stiffness_n_mm: float
    creep_tau_s: float
    guard_gain: float  # spine stiffening at full guarding (0 = no guarding)
    guard_tau_on_s: float
    guard_tau_off_s: float
    guard_reflex_n_s: float  # comfortable rate of rise: above it the muscles guard
    guard_scale_n_s: float  # rate above the reflex threshold for full guarding drive
    guard_ref_n: float  # spinal force at which the guarding drive is full
    motor_lag_s: float
    transport_delay_s: float
    vmax_mm_s: float
    amax_mm_s2: float
    gain_a: float
    gain_b: float
    offset_a_n: float
    offset_b_n: float
    noise_sd_n: float
    quant_n: float
    angle_rate_deg_s: float = 2.0
    freewheel_damping: float = 4.0
    declared: TableDynamics | None = None  # what the table tells the controller about itself
    # Drive effort reported per newton of cable tension (0 = the drive reports no effort).
    effort_gain: float = 1.0

    @property
    def stiffness_at_cell_n_mm(self) -> float:
        """Cable + harness + spine in series: the stiffness the load cell sees once the
        table friction is overcome."""
        return 1.0 / (1.0 / self.cable_stiffness_n_mm + 1.0 / self.spine_stiffness_n_mm)

    def params(self) -> npt.NDArray[np.float64]:
        """The physics kernel's parameter array."""
        p = np.zeros(ph.N_PARAM)
        lim = limits_for(self.region)
        p[ph.P_KCH] = self.cable_stiffness_n_mm
        p[ph.P_SLACK] = self.slack_mm
        p[ph.P_EFFORT_GAIN] = self.effort_gain
        p[ph.P_FF] = self.friction_n
        p[ph.P_K1] = self.spine_stiffness_n_mm
        p[ph.P_K2] = self.creep_stiffness_n_mm
        p[ph.P_C2] = self.creep_stiffness_n_mm * self.creep_tau_s
        p[ph.P_GUARD_GAIN] = self.guard_gain
        p[ph.P_GUARD_TAU_ON] = self.guard_tau_on_s
        p[ph.P_GUARD_TAU_OFF] = self.guard_tau_off_s
        p[ph.P_GUARD_R0] = self.guard_reflex_n_s
        p[ph.P_GUARD_RSCALE] = self.guard_scale_n_s
        p[ph.P_GUARD_FREF] = self.guard_ref_n
        p[ph.P_MOTOR_TAU] = self.motor_lag_s
        p[ph.P_DELAY_S] = self.transport_delay_s
        p[ph.P_VMAX] = self.vmax_mm_s
        p[ph.P_AMAX] = self.amax_mm_s2
        p[ph.P_B_FREE] = self.freewheel_damping
        p[ph.P_GAIN_A] = self.gain_a
        p[ph.P_GAIN_B] = self.gain_b
        p[ph.P_OFF_A] = self.offset_a_n
        p[ph.P_OFF_B] = self.offset_b_n
        p[ph.P_QUANT] = self.quant_n
        p[ph.P_NOISE_SD] = self.noise_sd_n
        p[ph.P_ANGLE_RATE] = self.angle_rate_deg_s
        p[ph.P_TRAVEL_MAX] = lim.travel.absolute.hi + 20.0  # the mechanical stop is past the limit
        return p


def nominal_plant(region: Region, body_weight_kg: float, *, split_table: bool = True,
                  noise: bool = True, seed: int = 0, slack_mm: float | None = None) -> PlantParams:
    """The built-in simulator's plant for a patient (docs/control.md, "Simulated table")."""
    bw_n = kg_to_n(body_weight_kg)
    scale = math.sqrt(body_weight_kg / 80.0)
    rng = np.random.default_rng(seed + 7919)
    gain_a = 1.0 + rng.uniform(-0.002, 0.002)
    gain_b = 1.0 + rng.uniform(-0.002, 0.002)
    off_a, off_b = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
    if region is Region.LUMBAR:
        # Lower body is about half the body weight; friction ~ half the segment weight on a
        # fixed table (Saunders lumbar guide), a few percent on a split table.
        plant = PlantParams(
            region=region, body_weight_kg=body_weight_kg,
            cable_stiffness_n_mm=15.0 * scale, slack_mm=25.0 if slack_mm is None else slack_mm,
            friction_n=0.5 * bw_n * (0.04 if split_table else 0.5),
            spine_stiffness_n_mm=120.0 * scale, creep_stiffness_n_mm=250.0 * scale,
            creep_tau_s=25.0, guard_gain=1.5, guard_tau_on_s=0.3, guard_tau_off_s=15.0,
            guard_reflex_n_s=15.0, guard_scale_n_s=30.0, guard_ref_n=0.35 * bw_n,
            motor_lag_s=0.02, transport_delay_s=0.0, vmax_mm_s=100.0, amax_mm_s2=2000.0,
            gain_a=gain_a, gain_b=gain_b, offset_a_n=off_a, offset_b_n=off_b,
            noise_sd_n=1.0, quant_n=0.05)
    else:
        plant = PlantParams(
            region=region, body_weight_kg=body_weight_kg,
            cable_stiffness_n_mm=6.0 * scale, slack_mm=12.0 if slack_mm is None else slack_mm,
            friction_n=0.08 * bw_n * 0.1,  # sliding head piece
            spine_stiffness_n_mm=40.0 * scale, creep_stiffness_n_mm=80.0 * scale,
            creep_tau_s=20.0, guard_gain=1.5, guard_tau_on_s=0.3, guard_tau_off_s=15.0,
            guard_reflex_n_s=5.0, guard_scale_n_s=10.0, guard_ref_n=0.08 * bw_n,
            motor_lag_s=0.02, transport_delay_s=0.0, vmax_mm_s=100.0, amax_mm_s2=2000.0,
            gain_a=gain_a, gain_b=gain_b, offset_a_n=0.3 * off_a, offset_b_n=0.3 * off_b,
            noise_sd_n=0.3, quant_n=0.02)
    if not noise:
        plant = replace(plant, noise_sd_n=0.0, offset_a_n=0.0, offset_b_n=0.0, gain_a=1.0,
                        gain_b=1.0, quant_n=1e-6)
    # The simulator knows its own drive, as a table maker knows theirs, and its cable: the load
    # cell sees the cable in series with the patient, so no patient can present more than the
    # cable's stiffness, which for the heaviest patient (300 kg) is 29 / 11.6 N/mm.
    return replace(plant, declared=TableDynamics(
        motor_lag_s=plant.motor_lag_s, transport_delay_s=plant.transport_delay_s,
        stiffness_max_n_per_mm=NOMINAL_STIFFNESS_MAX[region]))


NOMINAL_STIFFNESS_MAX = {Region.LUMBAR: 30.0, Region.CERVICAL: 12.0}


@dataclass(frozen=True)
class Span:
    """A parameter range of the family; `log` draws log-uniformly."""

    lo: float
    hi: float
    log: bool = False

    def draw(self, rng: np.random.Generator) -> float:
        """One value from the range."""
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))))
        return float(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class FamilyRanges:
    """The plant family of one region (documented in docs/control.md, "Plant family")."""

    stiffness_at_cell_n_mm: Span
    cable_to_spine_ratio: Span  # cable stiffness / spine elastic stiffness
    slack_mm: Span
    creep_ratio: Span  # creep stiffness / spine elastic stiffness
    creep_tau_s: Span
    motor_lag_s: Span
    transport_delay_s: Span
    vmax_mm_s: Span
    amax_mm_s2: Span
    noise_sd_n: Span
    offset_n: Span
    gain_error: Span
    quant_n: Span
    guard_strength: Span  # multiple of the nominal guarding gain
    guard_reflex_scale: Span  # multiple of the nominal reflex threshold
    guard_tau_on_s: Span
    guard_tau_off_s: Span
    fixed_table_probability: float
    declared_probability: float  # how often the table declares its drive dynamics
    declared_error: Span  # declared / true motor lag and delay
    effort_probability: float  # how often the drive reports its effort (a diverse force channel)
    effort_gain: Span  # reported effort / true cable tension


_LUMBAR = FamilyRanges(
        stiffness_at_cell_n_mm=Span(3.0, 150.0, log=True),
        cable_to_spine_ratio=Span(0.05, 2.0, log=True),
        slack_mm=Span(0.0, 80.0),
        creep_ratio=Span(0.8, 4.0, log=True),
        creep_tau_s=Span(5.0, 60.0, log=True),
        motor_lag_s=Span(0.005, 0.150, log=True),
        transport_delay_s=Span(0.0, 0.020),
        vmax_mm_s=Span(40.0, 150.0),
        amax_mm_s2=Span(200.0, 5000.0, log=True),
        noise_sd_n=Span(0.0, 3.0),
        offset_n=Span(-10.0, 10.0),
        gain_error=Span(-0.03, 0.03),
        quant_n=Span(0.01, 1.0, log=True),
        guard_strength=Span(0.0, 3.0),
        guard_reflex_scale=Span(0.5, 2.0, log=True),
        guard_tau_on_s=Span(0.1, 0.6),
        guard_tau_off_s=Span(5.0, 30.0, log=True),
        fixed_table_probability=0.3,
        declared_probability=0.7,
        declared_error=Span(0.7, 1.4, log=True),
        effort_probability=0.5,
        effort_gain=Span(0.9, 1.1),
)
# The cervical family differs only in stiffness, quantisation and the always-sliding head piece.
FAMILY: dict[Region, FamilyRanges] = {
    Region.LUMBAR: _LUMBAR,
    Region.CERVICAL: replace(_LUMBAR, stiffness_at_cell_n_mm=Span(0.5, 40.0, log=True),
                             quant_n=Span(0.01, 0.5, log=True), fixed_table_probability=0.0),
}


def draw_plant(region: Region, body_weight_kg: float, seed: int, *,
               max_force_n: float | None = None) -> PlantParams:
    """Draw one plant of the family. With `max_force_n`, a draw whose cable travel at that
    force (slack + stretch, with creep) would leave less than a fifth of the table's travel
    is drawn again: a table that cannot reach the protocol's force is not a plausible table
    for it, it is a set-up error the slack/travel checks already catch."""
    fam = FAMILY[region]
    rng = np.random.default_rng([seed, 0x5D1E, int(region is Region.CERVICAL)])
    nominal = nominal_plant(region, body_weight_kg, seed=seed)
    travel = limits_for(region).travel.safe.hi
    for _ in range(100):
        k_eff = fam.stiffness_at_cell_n_mm.draw(rng)
        ratio = fam.cable_to_spine_ratio.draw(rng)
        k1 = k_eff * (1.0 + 1.0 / ratio)
        kch = ratio * k1
        creep = fam.creep_ratio.draw(rng) * k1
        slack = fam.slack_mm.draw(rng)
        if max_force_n is None:
            break
        stretch = max_force_n / k_eff + max_force_n / creep
        if slack + stretch <= 0.8 * travel:
            break
    fixed = rng.uniform() < fam.fixed_table_probability
    bw_n = kg_to_n(body_weight_kg)
    friction = 0.5 * bw_n * 0.5 if fixed else nominal.friction_n * rng.uniform(0.5, 2.0)
    noise = fam.noise_sd_n.draw(rng)
    lag = fam.motor_lag_s.draw(rng)
    delay = fam.transport_delay_s.draw(rng)
    declared: TableDynamics | None = None
    if rng.uniform() < fam.declared_probability:
        declared = TableDynamics(motor_lag_s=lag * fam.declared_error.draw(rng),
                                 transport_delay_s=delay * fam.declared_error.draw(rng))
    return PlantParams(
        region=region, body_weight_kg=body_weight_kg,
        cable_stiffness_n_mm=kch, slack_mm=slack, friction_n=friction,
        spine_stiffness_n_mm=k1, creep_stiffness_n_mm=creep,
        creep_tau_s=fam.creep_tau_s.draw(rng),
        guard_gain=nominal.guard_gain * fam.guard_strength.draw(rng),
        guard_tau_on_s=fam.guard_tau_on_s.draw(rng),
        guard_tau_off_s=fam.guard_tau_off_s.draw(rng),
        guard_reflex_n_s=nominal.guard_reflex_n_s * fam.guard_reflex_scale.draw(rng),
        guard_scale_n_s=nominal.guard_scale_n_s,
        guard_ref_n=nominal.guard_ref_n,
        motor_lag_s=lag, transport_delay_s=delay,
        vmax_mm_s=fam.vmax_mm_s.draw(rng), amax_mm_s2=fam.amax_mm_s2.draw(rng),
        gain_a=1.0 + fam.gain_error.draw(rng), gain_b=1.0 + fam.gain_error.draw(rng),
        offset_a_n=fam.offset_n.draw(rng), offset_b_n=fam.offset_n.draw(rng),
        noise_sd_n=noise, quant_n=fam.quant_n.draw(rng),
        declared=declared,
        # Drawn last, so the rest of a seed's plant is what it was before effort existed.
        effort_gain=fam.effort_gain.draw(rng) if rng.uniform() < fam.effort_probability else 0.0,
    )
