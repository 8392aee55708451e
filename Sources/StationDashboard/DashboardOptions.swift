import ESPCore
import Foundation

extension DashboardConfig {
    /// The dashboard as a command line asks for it: `address` (HOST:PORT; nil: no dashboard) and
    /// the file holding its bearer token (at least 16 characters, surrounding blanks ignored).
    /// A token file without an address is an error.
    public static func parse(_ address: String?, tokenFile: String?) throws -> DashboardConfig? {
        guard let address else {
            if tokenFile != nil { throw UsageError("--dashboard-token-file without --dashboard", hint: "add --dashboard HOST:PORT") }
            return nil
        }
        let token = try tokenFile.map { path -> String in
            let text = try BoundedFile.readText(path, limit: .key).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.count >= 16 else {
                throw UsageError(Diagnostic("the dashboard token is shorter than 16 characters", file: path,
                                            hint: "e.g. `openssl rand -hex 32 > token && chmod 600 token`"))
            }
            return text
        }
        return try parse(address, token: token)
    }
}
