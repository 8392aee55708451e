import ESPCore
import FlashEncryption
import Foundation
import TestSupport

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

func bytes(hex text: String) -> [UInt8] {
    let chars = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: chars.count, by: 2).map { UInt8(String(chars[$0...$0 + 1]), radix: 16) ?? 0 }
}

func writeFile(_ bytes: [UInt8], _ url: URL) throws { try Data(bytes).write(to: url) }
func readFile(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

/// One espsecure encrypt-flash-data / decrypt-flash-data invocation.
struct OracleCase: Codable {
    var op: String        // "encrypt" | "decrypt"
    var key: String       // key file path
    var input: String
    var output: String
    var address: Int
    var conf: Int
    var xts: Bool
}

/// Runs many espsecure operations in one Python process (espsecure's own Python entry points,
/// the functions its CLI calls), so a few dozen cases cost one interpreter start.
func runOracleBatch(_ cases: [OracleCase], in dir: URL) throws {
    let manifest = dir.appendingPathComponent("cases.json")
    try JSONEncoder().encode(cases).write(to: manifest)
    let script = """
        import json, sys
        import espsecure
        for c in json.load(open(sys.argv[1])):
            run = espsecure.encrypt_flash_data if c["op"] == "encrypt" else espsecure.decrypt_flash_data
            with open(c["key"], "rb") as k, open(c["input"], "rb") as i, open(c["output"], "wb") as o:
                run(k, o, c["address"], c["conf"], c["xts"], i)
        """
    let result = try Oracle.run("python", ["-c", script, manifest.path])
    guard result.status == 0 else {
        throw TestSupportError.missing("a successful espsecure batch run: \(result.err)")
    }
}
