// The OpenAPI security requirement of the routes that need an API key when the server has them (SNOOPI_API_KEYS):
// POST /generate and everything under /v1. The scheme itself is declared in plugins/docs.ts.
export const apiKeySecurity = [{ apiKey: [] }];
