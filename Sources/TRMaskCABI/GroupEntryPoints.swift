import CTRMask
import TRMaskKernels

/// The C entry point of the GRPO group advantages (SPEC §4.10).
@c @implementation
public func trm_group_advantages(_ input: UnsafePointer<trm_groups_t>!, _ out: UnsafeMutablePointer<trm_group_out_t>!) -> trm_status_t {
    status { () throws(Status) in
        let groups = try readStruct(input)
        guard let out else { throw .nullPointer }
        let result = try readStruct(UnsafePointer(out))
        guard groups.reserved == 0, groups.reserved2 == 0, result.reserved == 0,
              groups.no_std_normalization == 0 || groups.no_std_normalization == 1, groups.eps_set == 0 || groups.eps_set == 1,
              let singleton = SingletonRule(rawValue: groups.singleton) else { throw .badOption }
        guard let group = try view(groups.group), let reward = try view(groups.reward) else { throw .nullPointer }
        let inputs = GroupInputs(rows: try int(groups.n_rows), group: group, reward: reward, keep: try view(groups.keep),
                                 normalizeStd: groups.no_std_normalization == 0, eps: groups.eps_set == 1 ? groups.eps : 1e-6,
                                 singleton: singleton)
        let outputs = GroupOutputs(advantages: try TRMaskCABI.out(result.advantages, as: Float.self),
                                   voters: try TRMaskCABI.out(result.voters, as: Int64.self),
                                   mean: try TRMaskCABI.out(result.mean, as: Double.self),
                                   std: try TRMaskCABI.out(result.std, as: Double.self))
        var summary = GroupSummary()
        let status = groupAdvantages(inputs, outputs: outputs, summary: &summary)
        if status == .ok {
            out.pointee.n_groups = Int64(summary.groups)
            out.pointee.n_groups_no_voter = Int64(summary.groupsWithoutVoters)
            out.pointee.n_groups_one_voter = Int64(summary.groupsWithOneVoter)
            out.pointee.n_rows_nonfinite_reward = Int64(summary.rowsNonfiniteReward)
        }
        return status
    }
}
