import CTRMask
import TRMaskKernels

/// The C entry points of the sharded-rows section of include/trmask.h (SPEC §3, partial rows):
/// translate the structs, then call the kernel entry point, which validates everything else.

@c @implementation
public func trm_partials_compute(_ batch: UnsafePointer<trm_batch_t>!, _ options: UnsafePointer<trm_options_t>!,
                                 _ out: UnsafePointer<trm_partials_t>!) -> trm_status_t {
    status { () throws(Status) in
        rowPartials(try TRMaskCABI.batch(batch), options: try TRMaskCABI.options(options), out: try partials(out))
    }
}

@c @implementation
public func trm_partials_merge(_ a: UnsafePointer<trm_partials_t>!, _ b: UnsafePointer<trm_partials_t>!,
                               _ out: UnsafePointer<trm_partials_t>!) -> trm_status_t {
    status { () throws(Status) in
        mergePartials(try partials(a), try partials(b), out: try partials(out))
    }
}

@c @implementation
public func trm_partials_decide(_ partials: UnsafePointer<trm_partials_t>!, _ criteria: UnsafePointer<trm_criterion_t>!,
                                _ nCriteria: Int64, _ options: UnsafePointer<trm_options_t>!,
                                _ out: UnsafePointer<trm_mask_out_t>!) -> trm_status_t {
    status { () throws(Status) in
        let out = try readStruct(out)
        guard out.metrics == nil else { throw .needsTokens }  // metrics run over every token
        return decidePartials(try TRMaskCABI.partials(partials), criteria: try TRMaskCABI.criteria(criteria, nCriteria),
                              options: try TRMaskCABI.options(options), outputs: try maskOutputs(out))
    }
}

/// A partials struct: its size and reserved field, its estimator codes (at most one of each),
/// and its arrays.
private func partials(_ pointer: UnsafePointer<trm_partials_t>?) throws(Status) -> RowPartials {
    let partials = try readStruct(pointer)
    guard partials.reserved == 0 else { throw .badOption }
    let count = partials.n_estimators
    guard count >= 0, count <= Int64(Estimator.deltaCount) else { throw .badSize }
    var estimators: [Estimator] = []
    if count > 0 {
        guard let codes = partials.estimators else { throw .nullPointer }
        estimators.reserveCapacity(Int(count))
        for code in UnsafeBufferPointer(start: codes, count: Int(count)) {
            guard let estimator = Estimator(rawValue: code) else { throw .badEstimator }
            estimators.append(estimator)
        }
    }
    return RowPartials(rows: try int(partials.n_rows), estimators: estimators,
                       count: try out(partials.count, as: Int64.self), nonfinite: try out(partials.nonfinite, as: Int64.self),
                       sum: try out(partials.sum, as: Double.self), max: try out(partials.max, as: Float.self),
                       min: try out(partials.min, as: Float.self))
}
