/// The drift metrics of the SPEC §9 additions that the row scan's sums do not give directly:
/// `min(k3, 10)` per token (AReaL #1572, miles #1067), summed per row.

/// The cap of the clamped k3 metrics.
let k3MetricCap: Float = 10

extension MaskScan {
    /// The float64 sum of `min(k3, 10)` over row `row`'s counted tokens. Equal to the k3 sum when
    /// the row's largest k3 is at most 10 (almost every row: no second read); otherwise one
    /// scalar pass over the row with the scan's delta, validity, NaN policy and clamp. NaN under
    /// the reject policy for a row with a NaN; 0 for a `values` input (the metric is NaN then).
    func clampedK3Total(_ row: Int, _ summary: RowSummary) -> Double {
        let nanPolicy = plan.nanPolicy
        if batch.source.givesValues || summary.counted == 0 { return 0 }
        if nanPolicy == .reject && summary.nans > 0 { return .nan }
        if summary.statistic(Criterion(.max, .k3), nanPolicy: nanPolicy) <= k3MetricCap {
            return summary.total(.k3, nanPolicy: nanPolicy)
        }
        let span = batch.rowSpan(row)
        let n = batch.scanCount(row, span: span.count)
        let mask = batch.mask.map { RowCursor($0, row: row, start: span.start, layout: batch.layout) }
        let primary = RowCursor(batch.source.primary, row: row, start: span.start, layout: batch.layout)
        let secondary = batch.source.secondary.map { RowCursor($0, row: row, start: span.start, layout: batch.layout) }
        var total = 0.0
        for p in 0..<n {
            if let mask, mask.float(p) == 0 { continue }
            var d: Float
            if let secondary {  // the rounding rule of `trm_batch_t`: float32, or float64 if either is F64
                d = primary.dtype == .f64 || secondary.dtype == .f64 ? Float(primary.double(p) - secondary.double(p))
                    : primary.float(p) - secondary.float(p)
            } else {
                d = primary.float(p)
            }
            if d.isNaN {
                if nanPolicy == .skip { continue }
                d = 0  // zero policy (reject returned above)
            }
            if d > plan.clamp { d = plan.clamp } else if d < -plan.clamp { d = -plan.clamp }
            let k3 = estimate(.k3, d)
            total += Double(k3 > k3MetricCap ? k3MetricCap : k3)
        }
        return total
    }
}
