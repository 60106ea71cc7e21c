import CTRMask
import TRMaskKernels

/// The C entry point of the error-bound calculator (SPEC §7; `trm_bounds_compute` in
/// include/trmask.h): translates the input struct into `BoundInputs`, calls `errorBounds`, and
/// writes the result only on success, after every input has been read.

@c @implementation
public func trm_bounds_compute(_ inputs: UnsafePointer<trm_bound_inputs_t>!, _ out: UnsafeMutablePointer<trm_bounds_t>!) -> trm_status_t {
    status { () throws(Status) in
        let request = try readStruct(inputs)
        guard let out else { throw .nullPointer }
        var result = try readStruct(UnsafePointer(out))
        guard result.reserved == 0, request.reserved == 0 else { throw .badOption }
        let dbar = try dbarBuffer(request.dbar, count: request.dbar_count)
        let rewardRange = request.reward_range == 0 ? 1 : request.reward_range  // a zeroed field: the default, 1
        let bounds: Bounds
        switch errorBounds(BoundInputs(T: request.T, klMax: request.kl_max, klSeq: request.kl_seq,
                                       eps: derivedIfNaN(request.eps), tvSeq: derivedIfNaN(request.tv_seq),
                                       dbar: dbar, rewardRange: rewardRange)) {
        case .success(let value): bounds = value
        case .failure: throw .badBoundInput
        }
        result.classical_tv = bounds.classicalTV
        result.classical_kl = bounds.classicalKL
        result.coupling = bounds.coupling
        result.pm_kl = bounds.pmKL
        result.pm_tv = bounds.pmTV
        result.mixed_kl = bounds.mixedKL
        result.mixed_tv = bounds.mixedTV
        result.linear = bounds.linear
        result.adaptive = bounds.adaptive
        result.unified = bounds.unified
        // The caller's struct_size stays; a larger (newer) struct keeps the bytes past this ABI's.
        out.pointee = result
        return .ok
    }
}

/// NaN in `eps` / `tv_seq` asks for the Pinsker value (the header's convention); any other value,
/// infinities and negatives included, goes to the calculator, which refuses what is out of domain.
private func derivedIfNaN(_ value: Double) -> Double? {
    value.isNaN ? nil : value
}

/// `dbar` as a buffer, or nil when absent (NULL with count 0). Refuses a NULL pointer with a
/// nonzero count, a negative count, and an extent that wraps around the address space; the
/// calculator checks `count == T` and the values.
private func dbarBuffer(_ pointer: UnsafePointer<Double>?, count: Int64) throws(Status) -> UnsafeBufferPointer<Double>? {
    guard count >= 0 else { throw .badSize }
    guard let pointer else {
        if count != 0 { throw .nullPointer }
        return nil
    }
    let elements = try int(count)
    guard let bytes = sizeProduct(elements, MemoryLayout<Double>.stride),
          !UInt(bitPattern: pointer).addingReportingOverflow(UInt(bytes)).overflow else { throw .outOfRange }
    return UnsafeBufferPointer(start: pointer, count: elements)
}
