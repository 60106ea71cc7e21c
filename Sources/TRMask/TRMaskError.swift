import TRMaskKernels

/// The types the Swift API shares with the kernels, under this module's name (semantics §2-§4).
public typealias Estimator = TRMaskKernels.Estimator
public typealias Aggregation = TRMaskKernels.Aggregation
public typealias NaNPolicy = TRMaskKernels.NaNPolicy
public typealias Criterion = TRMaskKernels.Criterion
public typealias ReductionOptions = TRMaskKernels.ReductionOptions
public typealias Status = TRMaskKernels.Status
public typealias WeightRule = TRMaskKernels.WeightRule
public typealias WeightLevel = TRMaskKernels.WeightLevel
public typealias WeightMode = TRMaskKernels.WeightMode
public typealias MaskMetrics = TRMaskKernels.MaskMetrics

/// Why trmask refused a call: the library status (the same codes as the C ABI's `TRM_E_*`) and,
/// when the Swift API can tell, the argument at fault.
public struct TRMaskError: Error, Equatable, CustomStringConvertible {
    public var status: Status
    public var argument: String?

    public init(_ status: Status, argument: String? = nil) {
        self.status = status
        self.argument = argument
    }

    public var description: String {
        let text = "\(status.message) (\(status.name))"
        return argument.map { "`\($0)`: \(text)" } ?? text
    }

    /// Throws unless `status` is `.ok`.
    static func check(_ status: Status, argument: String? = nil) throws(TRMaskError) {
        if status != .ok { throw TRMaskError(status, argument: argument) }
    }
}
