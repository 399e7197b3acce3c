// The credential of an `Authorization: Bearer <token>` header, for the admin token (plugins/admin-auth.ts) and the
// API keys (plugins/api-keys.ts) alike.
const bearer = /^Bearer +(\S+) *$/i;

/** The token of `authorization` when it is "Bearer <token>"; undefined for anything else. */
export const bearerToken = (authorization: string | undefined): string | undefined => bearer.exec(authorization ?? '')?.[1];
