import { useState } from 'react'
import Modal from './Modal.jsx'
import { api } from './api.js'

// The user's own data: download all of it; delete the account (the password typed again).
export default function AccountPanel({ user, onClose, onDeleted }) {
  const [password, setPassword] = useState('')
  const [confirming, setConfirming] = useState(false)
  const [error, setError] = useState('')

  async function remove(event) {
    event.preventDefault()
    setError('')
    try {
      await api.deleteAccount(password)
      onDeleted()
    } catch (e) {
      setError(e.message)
    }
  }

  return (
    <Modal title="Your account" closeLabel="Close account" onClose={onClose}>
      <p dir="auto">
        <strong>{user.username}</strong> <span className="muted">{user.email}</span>
      </p>
      <p>
        <a href="/api/account/export" download>
          Download all my data
        </a>{' '}
        <span className="muted">(one JSON file: your conversations, and your API keys' names)</span>
      </p>
      {!confirming ? (
        <button type="button" className="small danger-outline" onClick={() => setConfirming(true)}>
          Delete my account…
        </button>
      ) : (
        <form className="settings-form" onSubmit={remove}>
          <p className="notice">
            This deletes your account, every conversation and message, your sessions and your API keys. It cannot be
            undone.
          </p>
          <label>
            Your password
            <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} />
          </label>
          {error && (
            <p className="error" role="alert">
              {error}
            </p>
          )}
          <div className="settings-actions">
            <button type="button" className="small" onClick={() => setConfirming(false)}>
              Keep my account
            </button>
            <button type="submit" className="danger small" disabled={!password}>
              Delete my account
            </button>
          </div>
        </form>
      )}
    </Modal>
  )
}
