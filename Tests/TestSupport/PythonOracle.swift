import Foundation

/// The oracle venv's Python (`$ESPFORGE_ORACLE/python3`) as a differential reference: one process
/// per batch. The script reads a JSON array of cases on stdin and prints a JSON array of results.
public enum PythonOracle {
    public static func run(script: String, cases: [Any]) throws -> [Any] {
        let python = try Oracle.tool("python3")
        let input = try JSONSerialization.data(withJSONObject: cases)
        let r = try ProcessRunner.run(python, ["-c", script], stdin: [UInt8](input))
        guard r.status == 0 else {
            throw TestSupportError.missing("python3 -c … exited \(r.status): \(String(decoding: r.stderr, as: UTF8.self))")
        }
        guard let out = try JSONSerialization.jsonObject(with: Data(r.stdout)) as? [Any], out.count == cases.count else {
            throw TestSupportError.missing("python3 printed no result array of \(cases.count) entries")
        }
        return out
    }
}
