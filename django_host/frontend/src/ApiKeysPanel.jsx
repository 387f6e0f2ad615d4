import { useEffect, useState } from 'react'
import Modal from './Modal.jsx'
import { api } from './api.js'

// Keys for dziri's OpenAI-compatible API (/v1): make one (shown this once), list, revoke.
export default function ApiKeysPanel({ onClose }) {
  const [keys, setKeys] = useState(null)
  const [name, setName] = useState('')
  const [made, setMade] = useState(null) // the key just made: the only time it is seen
  const [confirming, setConfirming] = useState(null)
  const [error, setError] = useState('')
  const [copied, setCopied] = useState(false)

  useEffect(() => {
    api.apiKeys().then(setKeys, (e) => setError(e.message))
  }, [])

  async function create(event) {
    event.preventDefault()
    setError('')
    try {
      const key = await api.createApiKey(name.trim())
      setMade(key)
      setCopied(false)
      setName('')
      setKeys((current) => [key, ...(current || [])])
    } catch (e) {
      setError(e.message)
    }
  }

  async function revoke(id) {
    setError('')
    try {
      await api.revokeApiKey(id)
      setKeys((current) => current.filter((k) => k.id !== id))
      if (made?.id === id) setMade(null)
    } catch (e) {
      setError(e.message)
    } finally {
      setConfirming(null)
    }
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(made.key)
      setCopied(true)
    } catch {
      setError('Copying was refused by the browser: select the key and copy it by hand.')
    }
  }

  return (
    <Modal title="API keys" closeLabel="Close API keys" onClose={onClose}>
      <p className="muted">
        A key lets other programs use dziri's model through its OpenAI-compatible API at{' '}
        <code>{window.location.origin}/v1</code> (the <code>openai</code> SDK, Open WebUI…), model <code>dziri</code>.
      </p>
      <form className="key-form" onSubmit={create}>
        <input aria-label="Key name" placeholder="What is it for? (optional)" maxLength={60} value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" className="primary small">
          Create key
        </button>
      </form>
      {made && (
        <div className="notice new-key" role="status">
          <p>Copy this key now: it is shown only this once.</p>
          <code className="secret" aria-label="New API key">
            {made.key}
          </code>
          <button type="button" className="small" onClick={copy}>
            {copied ? 'Copied' : 'Copy'}
          </button>
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {keys === null ? (
        <p className="muted">Loading…</p>
      ) : keys.length === 0 ? (
        <p className="muted">No keys yet.</p>
      ) : (
        <ul className="key-list" aria-label="Your API keys">
          {keys.map((key) => (
            <li key={key.id}>
              <span className="key-name" dir="auto">
                {key.name || 'unnamed'}
              </span>
              <code className="muted">{key.prefix}…</code>
              <span className="muted">{new Date(key.created_at).toLocaleDateString()}</span>
              {confirming === key.id ? (
                <button type="button" className="danger small" aria-label={`Confirm revoke ${key.name || key.prefix}`} onClick={() => revoke(key.id)}>
                  Revoke
                </button>
              ) : (
                <button type="button" className="small" aria-label={`Revoke ${key.name || key.prefix}`} onClick={() => setConfirming(key.id)}>
                  Revoke…
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
    </Modal>
  )
}
