import CTRMask
import TRMaskKernels

/// The C entry points of include/trmask.h. Each translates its arguments and calls one kernel
/// entry point; `@c @implementation` makes the compiler check every signature against the header.

@c @implementation
public func trm_abi_version() -> UInt32 {
    UInt32(TRM_ABI_VERSION)
}

@c @implementation
public func trm_version() -> UnsafePointer<CChar>! {
    versionText
}

/// The header's TRM_VERSION_STRING (the one place the version is written), copied once, on the
/// first call, into memory that lives as long as the library: Swift imports the macro as a String,
/// which has no lasting C pointer of its own. `nonisolated(unsafe)`: the bytes are written once,
/// inside Swift's thread-safe global initialisation, and only read after that.
nonisolated(unsafe) private let versionText: UnsafePointer<CChar> = {
    let text = TRM_VERSION_STRING.utf8CString
    let copy = UnsafeMutablePointer<CChar>.allocate(capacity: text.count)
    for (index, byte) in text.enumerated() {
        (copy + index).initialize(to: byte)
    }
    return UnsafePointer(copy)
}()

@c @implementation
public func trm_status_string(_ status: trm_status_t) -> UnsafePointer<CChar>! {
    cString(Status(rawValue: status)?.message ?? "unknown status")
}

@c @implementation
public func trm_status_name(_ status: trm_status_t) -> UnsafePointer<CChar>! {
    cString(Status(rawValue: status)?.name ?? "TRM_E_UNKNOWN")
}

@c @implementation
public func trm_mask(_ batch: UnsafePointer<trm_batch_t>!, _ criteria: UnsafePointer<trm_criterion_t>!, _ nCriteria: Int64,
                     _ options: UnsafePointer<trm_options_t>!, _ out: UnsafePointer<trm_mask_out_t>!) -> trm_status_t {
    status { () throws(Status) in
        let out = try readStruct(out)
        let batch = try TRMaskCABI.batch(batch), criteria = try TRMaskCABI.criteria(criteria, nCriteria)
        let options = try TRMaskCABI.options(options)
        var outputs = try maskOutputs(out)
        return try withMetrics(out.metrics) { metrics in
            outputs.metrics = metrics
            return trustRegionMask(batch, criteria: criteria, options: options, outputs: outputs)
        }
    }
}

@c @implementation
public func trm_importance_weights(_ batch: UnsafePointer<trm_batch_t>!, _ options: UnsafePointer<trm_options_t>!,
                                   _ rule: trm_weight_rule_t, _ keepRow: trm_view_t, _ outWeights: trm_out_t) -> trm_status_t {
    status { () throws(Status) in
        importanceWeights(try TRMaskCABI.batch(batch), options: try TRMaskCABI.options(options), rule: try weightRule(rule),
                          keepRow: try view(keepRow), out: try out(outWeights, as: Float.self))
    }
}

@c @implementation
public func trm_token_keep(_ batch: UnsafePointer<trm_batch_t>!, _ criteria: UnsafePointer<trm_criterion_t>!, _ nCriteria: Int64,
                           _ options: UnsafePointer<trm_options_t>!, _ keepRow: trm_view_t, _ outKeepToken: trm_out_t) -> trm_status_t {
    status { () throws(Status) in
        guard let keepRow = try view(keepRow) else { throw .nullPointer }
        return tokenKeep(try TRMaskCABI.batch(batch), criteria: try TRMaskCABI.criteria(criteria, nCriteria),
                         options: try TRMaskCABI.options(options), keepRow: keepRow, out: try out(outKeepToken, as: UInt8.self))
    }
}

@c @implementation
public func trm_token_values(_ batch: UnsafePointer<trm_batch_t>!, _ estimator: Int32, _ options: UnsafePointer<trm_options_t>!,
                             _ outValues: trm_out_t) -> trm_status_t {
    status { () throws(Status) in
        guard let estimator = Estimator(rawValue: estimator) else { throw .badEstimator }
        return tokenValues(try TRMaskCABI.batch(batch), estimator: estimator, options: try TRMaskCABI.options(options),
                           out: try out(outValues, as: Float.self))
    }
}

/// A static string's bytes as a C string: literals are stored NUL-terminated in the binary.
private func cString(_ text: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}
