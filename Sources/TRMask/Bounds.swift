import TRMaskKernels

/// Every error bound of semantics §7 (the paper's bounds on the surrogate-objective error), already
/// multiplied by the reward range. See `errorBounds(T:klMax:klSeq:eps:tvSeq:dbar:rewardRange:)`.
public typealias Bounds = TRMaskKernels.Bounds

public extension Bounds {
    /// The bounds under the names of `Tests/vectors/bounds.json` (and of the C struct
    /// `trm_bounds_t` and the Python dict), in that order.
    var named: KeyValuePairs<String, Double> {
        ["classical_tv": classicalTV, "classical_kl": classicalKL, "coupling": coupling, "pm_kl": pmKL,
         "pm_tv": pmTV, "mixed_kl": mixedKL, "mixed_tv": mixedTV, "linear": linear, "adaptive": adaptive,
         "unified": unified]
    }
}

/// Every error bound of semantics §7 for a sequence length `T` and measured divergences.
///
/// - `klMax`: `delta = D_KL^{tok,max}` in nats, the maximum token KL over **all reachable
///   contexts**. A maximum over a training batch is only a plug-in estimate of it: bounds computed
///   from one are estimates, not the guarantee of the theorems.
/// - `klSeq`: `D_KL^{seq}`. `eps`: `D_TV^{tok,max}` (`nil`: `sqrt(klMax / 2)`). `tvSeq`:
///   `D_TV^{seq}` (`nil`: `sqrt(klSeq / 2)`). `dbar`: per-position mean TV `Dbar_1..Dbar_T`
///   (`nil`: `eps` everywhere). `rewardRange`: `r_max - r_min`, every bound is multiplied by it.
///
/// The sums are exact (not closed-form upper bounds), in O(log T) without `dbar`, and accurate to a
/// few ulps. Throws `TRMaskError` with status `.badBoundInput` and the argument's name (`T`,
/// `klMax`, `klSeq`, `eps`, `tvSeq`, `dbar`, `rewardRange`) when an input is out of its domain:
/// `T < 1`, a divergence negative or not finite, `dbar.count != T`, `rewardRange` not `> 0`.
public func errorBounds(T: Int, klMax: Double, klSeq: Double, eps: Double? = nil, tvSeq: Double? = nil,
                        dbar: [Double]? = nil, rewardRange: Double = 1) throws(TRMaskError) -> Bounds {
    let result = try withOptionalBuffer(dbar) { (dbar) throws(TRMaskError) in
        TRMaskKernels.errorBounds(BoundInputs(T: Int64(T), klMax: klMax, klSeq: klSeq, eps: eps, tvSeq: tvSeq,
                                              dbar: dbar, rewardRange: rewardRange))
    }
    switch result {
    case .success(let bounds):
        return bounds
    case .failure(let error):
        throw TRMaskError(.badBoundInput, argument: argumentName(error))
    }
}

private func argumentName(_ error: BoundsInputError) -> String {
    switch error {
    case .badLength: "T"
    case .badKLMax: "klMax"
    case .badKLSeq: "klSeq"
    case .badEps: "eps"
    case .badTVSeq: "tvSeq"
    case .badDbar: "dbar"
    case .badRewardRange: "rewardRange"
    }
}
