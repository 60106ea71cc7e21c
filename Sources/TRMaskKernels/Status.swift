/// Why a request was refused. Raw values are the pinned `TRM_E_*` codes of `include/trmask.h`
/// (a Python test compares the two); new cases are only ever appended.
public enum Status: Int32, CaseIterable, Sendable {
    case ok = 0
    case nullPointer = 1
    case badStructSize = 2
    case badSize = 3
    case badDType = 4
    case badStride = 5
    case outOfRange = 6
    case aliasing = 7
    case badLayout = 8
    case badInputs = 9
    case badEstimator = 10
    case badAggregation = 11
    case badNaNPolicy = 12
    case badThreshold = 13
    case badOffsets = 14
    case badLengths = 15
    case badOption = 16
    case internalError = 17
    case badTemperature = 18
    case badTokenID = 19
    case badBoundInput = 20
    case badLengthNeutral = 21
    case badWeightRule = 22
    case needsTokens = 23
    case badPartials = 24
    case tooLarge = 25
    case needsLogProbs = 26
    case badAdvantageRule = 27
    case needsAdvantages = 28
    case badRejection = 30
    case badCorrectionWeights = 31
    case badDivisor = 32
    case badCorrectionRows = 33

    /// The `TRM_*` macro name, as static text for the C ABI.
    public var name: StaticString {
        switch self {
        case .ok: "TRM_OK"
        case .nullPointer: "TRM_E_NULL_POINTER"
        case .badStructSize: "TRM_E_BAD_STRUCT_SIZE"
        case .badSize: "TRM_E_BAD_SIZE"
        case .badDType: "TRM_E_BAD_DTYPE"
        case .badStride: "TRM_E_BAD_STRIDE"
        case .outOfRange: "TRM_E_OUT_OF_RANGE"
        case .aliasing: "TRM_E_ALIASING"
        case .badLayout: "TRM_E_BAD_LAYOUT"
        case .badInputs: "TRM_E_BAD_INPUTS"
        case .badEstimator: "TRM_E_BAD_ESTIMATOR"
        case .badAggregation: "TRM_E_BAD_AGGREGATION"
        case .badNaNPolicy: "TRM_E_BAD_NAN_POLICY"
        case .badThreshold: "TRM_E_BAD_THRESHOLD"
        case .badOffsets: "TRM_E_BAD_OFFSETS"
        case .badLengths: "TRM_E_BAD_LENGTHS"
        case .badOption: "TRM_E_BAD_OPTION"
        case .internalError: "TRM_E_INTERNAL"
        case .badTemperature: "TRM_E_BAD_TEMPERATURE"
        case .badTokenID: "TRM_E_BAD_TOKEN_ID"
        case .badBoundInput: "TRM_E_BAD_BOUND_INPUT"
        case .badLengthNeutral: "TRM_E_BAD_LENGTH_NEUTRAL"
        case .badWeightRule: "TRM_E_BAD_WEIGHT_RULE"
        case .needsTokens: "TRM_E_NEEDS_TOKENS"
        case .badPartials: "TRM_E_BAD_PARTIALS"
        case .tooLarge: "TRM_E_TOO_LARGE"
        case .needsLogProbs: "TRM_E_NEEDS_LOG_PROBS"
        case .badAdvantageRule: "TRM_E_BAD_ADVANTAGE_RULE"
        case .needsAdvantages: "TRM_E_NEEDS_ADVANTAGES"
        case .badRejection: "TRM_E_BAD_REJECTION"
        case .badCorrectionWeights: "TRM_E_BAD_CORRECTION_WEIGHTS"
        case .badDivisor: "TRM_E_BAD_DIVISOR"
        case .badCorrectionRows: "TRM_E_BAD_CORRECTION_ROWS"
        }
    }

    /// One line of English for users, as static text for the C ABI.
    public var message: StaticString {
        switch self {
        case .ok: "success"
        case .nullPointer: "a required pointer is NULL"
        case .badStructSize: "struct_size is smaller than this library's struct (ABI mismatch)"
        case .badSize: "a size or count is negative, too large, or overflows"
        case .badDType: "unknown dtype, or a dtype this argument does not accept"
        case .badStride: "output strides overlap, or a packed view has a nonzero stride_row"
        case .outOfRange: "an array's extent overflows the address space"
        case .aliasing: "an output overlaps another output or an input"
        case .badLayout: "unknown layout"
        case .badInputs: "give exactly one of: logp_train with logp_roll, log_ratio, values"
        case .badEstimator: "unknown estimator, or one these inputs cannot give"
        case .badAggregation: "unknown aggregation"
        case .badNaNPolicy: "unknown NaN policy"
        case .badThreshold: "invalid threshold: NaN, lo > hi, or unreachable for this estimator"
        case .badOffsets: "packed offsets decrease, start below 0, or end past the data"
        case .badLengths: "a length is negative or longer than its row"
        case .badOption: "invalid option: clamp must be > 0, threads >= 0, flags 0 or 1, reserved 0"
        case .internalError: "internal error in trmask (a bug: please report it)"
        case .badTemperature: "temperature must be finite and > 0"
        case .badTokenID: "a token id is outside 0 ..< vocabulary size, or repeats within a position's top-k"
        case .badBoundInput: "an error-bound input is out of its domain"
        case .badLengthNeutral: "LN-TRM needs kl_max finite and > 0 and eps >= 0 (0 = none); other aggregations take neither"
        case .badWeightRule: "invalid weight rule: unknown level or mode, or bounds not 0 <= lo <= hi (truncate: lo = 0)"
        case .needsTokens: "a token criterion or keep_token needs every token: row partials cannot give it"
        case .badPartials: "partials do not match (row count, estimator list) or hold a negative or overflowing count"
        case .tooLarge: "the request needs more working memory than trmask allocates (see the header's limits)"
        case .needsLogProbs: "binary estimators (bdiff, btv, bkl, bkl_tr, bkl_sym) and the bdiff/bkl advantage rules need logp_train and logp_roll (advantage rules at least a log-ratio), not values"
        case .badAdvantageRule: "invalid advantage rule: unknown statistic or zero mode, a NaN or negative bound (ratio: not > 0), a NaN sequence limit, a flag not 0/1, or nothing to do"
        case .needsAdvantages: "advantages do not fit the rule: missing, given without a rule, both per-token and per-row, or per-token for the sequence rule (it needs one per row)"
        case .badRejection: "invalid rejection option: unknown level, an estimator other than k1/k2/k3, NaN bound or lo > hi, or too many"
        case .badCorrectionWeights: "invalid correction weights: level token or sequence, mode truncate (0 < hi) or mask (0 < lo <= hi)"
        case .badDivisor: "the weight divisor must be finite and > 0"
        case .badCorrectionRows: "correction row records that do not fit the call: row count, dtypes or inputs differ, or a count or flag out of its domain"
        }
    }
}
