/// The batch metrics of SPEC §9, computed in the mask's pass: each row leaves a record as it is
/// decided, and the records are reduced in row order after the scan, so the metrics are the same
/// numbers for any thread count. Names and formulas: docs/metrics.md.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The metrics of one mask call. A mean or extremum over an empty set is 0; NaN marks a metric
/// the inputs cannot define, and every mean and extremum under the reject policy when a counted
/// token is NaN.
public struct MaskMetrics: Sendable, Equatable {
    public var rows = 0
    public var nonEmptyRows = 0
    /// Counted tokens of all rows.
    public var tokens = 0
    public var keptRows = 0
    /// Tokens whose `keep_token` is 1.
    public var keptTokens = 0
    /// The longest row, in counted tokens (`plugin_max_len`).
    public var maxLength = 0
    /// Rejected rows over all rows.
    public var maskedRowFraction = 0.0
    /// `mean_i |mean_t (logp_train - logp_roll)|` over non-empty rows, before the clamp; NaN
    /// without both log-probabilities (`log_ppl_abs_diff`).
    public var logPerplexityGap = Double.nan
    /// Token means of k1, k3 and `expm1(2 delta)`; NaN for a `values` input.
    public var klK1 = Double.nan, klK3 = Double.nan, chi2Token = Double.nan
    /// The largest statistic of the first `max` criterion over non-empty rows; NaN without one.
    public var pluginKLMax = Double.nan
    /// `mean_i sum_t k3` over non-empty rows; NaN for a `values` input.
    public var pluginKLSeq = Double.nan
    /// Token mean and maximum of each estimator a criterion uses, by `Estimator.rawValue`; NaN
    /// for the others.
    public var tokenMean = SIMD8<Double>(repeating: .nan)
    public var tokenMax = SIMD8<Double>(repeating: .nan)
    /// The same for the binary estimators (SPEC §4.7), by `rawValue - 8` (five used).
    public var binaryTokenMean = SIMD8<Double>(repeating: .nan)
    public var binaryTokenMax = SIMD8<Double>(repeating: .nan)
    /// Mean, maximum and minimum of each row criterion's statistic over non-empty rows, by
    /// criterion index; NaN for token criteria.
    public var rowMean: [Double] = []
    public var rowMax: [Double] = []
    public var rowMin: [Double] = []
    /// Positions of the token grid (`B * T` padded, `N` packed).
    public var positions = 0
    /// Token means of delta and |delta| (after the clamp); NaN for a `values` input.
    public var deltaMean = Double.nan, deltaAbsMean = Double.nan
    /// `min(k3, 10)`: its token mean, and the mean over non-empty rows of its row means; NaN for
    /// a `values` input.
    public var k3ClampedTokenMean = Double.nan, k3ClampedRowMean = Double.nan

    public init() {}
}

/// What one row contributes to the metrics.
struct RowRecord {
    var counted = 0
    var keptTokens = 0
    var keep = false
    /// A NaN token under the reject policy.
    var nan = false
    var sums = RowSums()
    /// The row maximum of each estimator, by raw value.
    var maxima = SIMD8<Float>()
    /// The binary estimators' row sums and maxima (`BinaryRowStats`).
    var binarySum = SIMD8<Double>()
    var binaryMax = SIMD8<Float>()
    /// The row sum of `min(k3, 10)`.
    var k3Clamped = 0.0
}

/// Bytes of the per-row records of `rows` rows with `rowCriteria` row criteria, or nil when
/// they exceed `maximumScratchBytes` (the call is then refused with `.tooLarge`).
func metricRecordBytes(rows: Int, rowCriteria: Int) -> Int? {
    guard let cells = sizeProduct(rows, rowCriteria), let statistics = scratchBytes(cells, of: Float.self) else { return nil }
    return scratchBytes(rows, of: RowRecord.self, plus: statistics)
}

/// The per-row records of one call (row statistics in `[rows, rowCriteria]`), allocated only
/// when metrics are asked for, in one block.
struct MetricRecords: @unchecked Sendable {
    let records: UnsafeMutableBufferPointer<RowRecord>
    let statistics: UnsafeMutableBufferPointer<Float>
    let rowCriteria: Int
    /// The estimators of delta the criteria use.
    let estimators: [Estimator]
    /// The binary estimators the criteria use (the rules pass reduces them).
    let binaryEstimators: [Estimator]

    /// nil when the memory is not available (`malloc` fails: the call returns `.tooLarge`
    /// instead of aborting). Validation bounded the size (`metricRecordBytes`).
    init?(rows: Int, criteria: [Criterion]) {
        rowCriteria = criteria.count(where: { $0.isRowCriterion })
        guard let bytes = metricRecordBytes(rows: rows, rowCriteria: rowCriteria) else { return nil }
        var block: UnsafeMutableRawPointer?
        let alignment = Swift.max(MemoryLayout<RowRecord>.alignment, MemoryLayout<Int>.size)
        guard posix_memalign(&block, alignment, Swift.max(bytes, 1)) == 0, let block else { return nil }
        records = UnsafeMutableBufferPointer(start: block.bindMemory(to: RowRecord.self, capacity: rows), count: rows)
        records.initialize(repeating: RowRecord())
        let tail = block + rows &* MemoryLayout<RowRecord>.stride
        statistics = UnsafeMutableBufferPointer(start: tail.bindMemory(to: Float.self, capacity: rows &* rowCriteria),
                                                count: rows &* rowCriteria)
        statistics.initialize(repeating: 0)
        var estimators: [Estimator] = []
        for criterion in criteria where !estimators.contains(criterion.estimator) { estimators.append(criterion.estimator) }
        self.estimators = estimators.filter { !$0.isBinary }
        binaryEstimators = estimators.filter(\.isBinary)
    }

    func deallocate() {
        free(UnsafeMutableRawPointer(records.baseAddress))
    }

    func record(row: Int, _ summary: RowSummary, _ binary: BinaryRowStats, k3Clamped: Double, keep: Bool, keptTokens: Int,
                nanPolicy: NaNPolicy) {
        var record = RowRecord(counted: summary.counted, keptTokens: keep ? keptTokens : 0, keep: keep,
                               nan: nanPolicy == .reject && (summary.nans > 0 || binary.nan), sums: summary.sums,
                               binarySum: binary.sum, binaryMax: binary.max, k3Clamped: k3Clamped)
        for estimator in estimators where summary.counted > 0 {
            record.maxima[Int(estimator.rawValue)] = summary.statistic(Criterion(.max, estimator), nanPolicy: nanPolicy)
        }
        records[row] = record
    }

    /// Reduces the records in row order.
    func reduce(criteria: [Criterion], source: Source) -> MaskMetrics {
        var m = MaskMetrics()
        m.rows = records.count
        var sums = RowSums()
        var tokenMax = SIMD8<Double>(repeating: -.infinity)
        var binarySum = SIMD8<Double>(), binaryMax = SIMD8<Double>(repeating: -.infinity)
        var perRow = (logPerplexityGap: 0.0, k3: 0.0, k3ClampedMean: 0.0)
        var k3Clamped = 0.0
        var columns = [(sum: Double, max: Double, min: Double)](repeating: (0, -.infinity, .infinity), count: rowCriteria)
        var anyNaN = false
        for (row, record) in records.enumerated() {
            if record.keep {
                m.keptRows += 1
                m.keptTokens += record.keptTokens
            }
            guard record.counted > 0 else { continue }
            anyNaN = anyNaN || record.nan
            m.nonEmptyRows += 1
            m.tokens += record.counted
            m.maxLength = Swift.max(m.maxLength, record.counted)
            let s = record.sums
            sums = RowSums(linear: sums.linear + s.linear, k2: sums.k2 + s.k2, k3: sums.k3 + s.k3, abs: sums.abs + s.abs,
                           ratio: sums.ratio + s.ratio, tv: sums.tv + s.tv, chi2: sums.chi2 + s.chi2, raw: sums.raw + s.raw)
            for estimator in estimators {
                let e = Int(estimator.rawValue)
                tokenMax[e] = Swift.max(tokenMax[e], Double(record.maxima[e]))
            }
            for estimator in binaryEstimators {
                let e = BinaryRowStats.slot(estimator)
                binarySum[e] += record.binarySum[e]
                binaryMax[e] = Swift.max(binaryMax[e], Double(record.binaryMax[e]))
            }
            perRow.logPerplexityGap += Swift.abs(s.raw / Double(record.counted))
            perRow.k3 += s.k3
            k3Clamped += record.k3Clamped
            perRow.k3ClampedMean += record.k3Clamped / Double(record.counted)
            for column in 0..<rowCriteria {
                let value = Double(statistics[row * rowCriteria + column])
                columns[column] = (columns[column].sum + value, nanMax(columns[column].max, value),
                                   -nanMax(-columns[column].min, -value))
            }
        }
        m.maskedRowFraction = m.rows > 0 ? Double(m.rows - m.keptRows) / Double(m.rows) : 0
        // Means and extrema over an empty set are 0.
        let tokens = Double(m.tokens), rows = Double(m.nonEmptyRows)
        func mean(_ total: Double, _ n: Double) -> Double { n > 0 ? total / n : 0 }
        for estimator in estimators {
            let e = Int(estimator.rawValue)
            m.tokenMean[e] = mean(sums.of(estimator), tokens)
            m.tokenMax[e] = m.tokens > 0 ? tokenMax[e] : 0
        }
        for estimator in binaryEstimators {
            let e = BinaryRowStats.slot(estimator)
            m.binaryTokenMean[e] = mean(binarySum[e], tokens)
            m.binaryTokenMax[e] = m.tokens > 0 ? binaryMax[e] : 0
        }
        if !source.givesValues {
            m.klK1 = mean(-sums.linear, tokens)
            m.klK3 = mean(sums.k3, tokens)
            m.chi2Token = mean(sums.chi2, tokens)
            m.pluginKLSeq = mean(perRow.k3, rows)
            m.deltaMean = mean(sums.linear, tokens)
            m.deltaAbsMean = mean(sums.abs, tokens)
            m.k3ClampedTokenMean = mean(k3Clamped, tokens)
            m.k3ClampedRowMean = mean(perRow.k3ClampedMean, rows)
        }
        if source.secondary != nil { m.logPerplexityGap = mean(perRow.logPerplexityGap, rows) }
        m.rowMean = [Double](repeating: .nan, count: criteria.count)
        m.rowMax = m.rowMean
        m.rowMin = m.rowMean
        var column = 0
        for (index, criterion) in criteria.enumerated() where criterion.isRowCriterion {
            m.rowMean[index] = mean(columns[column].sum, rows)
            m.rowMax[index] = m.nonEmptyRows > 0 ? columns[column].max : 0
            m.rowMin[index] = m.nonEmptyRows > 0 ? columns[column].min : 0
            if criterion.aggregation == .max && m.pluginKLMax.isNaN { m.pluginKLMax = m.rowMax[index] }
            column += 1
        }
        if anyNaN { m.poisonMeans() }
        return m
    }
}

/// The larger of two values, NaN if either is (a row statistic is NaN when its row holds both
/// `+inf` and `-inf` deltas, under any NaN policy; the extrema then see it, as the mean does).
func nanMax(_ a: Double, _ b: Double) -> Double {
    a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
}

extension MaskMetrics {
    /// Under the reject policy a NaN token makes every mean and extremum that sees it NaN.
    mutating func poisonMeans() {
        logPerplexityGap = .nan
        klK1 = .nan
        klK3 = .nan
        chi2Token = .nan
        pluginKLMax = .nan
        pluginKLSeq = .nan
        deltaMean = .nan
        deltaAbsMean = .nan
        k3ClampedTokenMean = .nan
        k3ClampedRowMean = .nan
        tokenMean = SIMD8(repeating: .nan)
        tokenMax = SIMD8(repeating: .nan)
        binaryTokenMean = SIMD8(repeating: .nan)
        binaryTokenMax = SIMD8(repeating: .nan)
        rowMean = rowMean.map { _ in .nan }
        rowMax = rowMean
        rowMin = rowMean
    }
}
